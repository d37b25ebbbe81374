"""The optimizers, losses and learning-rate schedules that ship with fmnist-gui.

They are ordinary plugins: ``pyproject.toml`` declares them in the
``fmnist_gui`` entry-point group, the same way a third-party package does, and
the host finds them the same way. Nothing outside this package names an
optimizer, loss or schedule class.
"""
