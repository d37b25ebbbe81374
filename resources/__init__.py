"""Icons and other files the app ships, installed as ``fmnist_gui.resources``."""
