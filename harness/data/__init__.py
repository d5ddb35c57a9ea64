"""Offline datasets: the episode format (`format`) and how datasets are made (`collect`)."""
