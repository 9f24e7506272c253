"""Installers: pick the PyTorch wheel index for this machine and run the shell installers in ../install/."""
