"""The Sweep tab: tune optimizers fairly with the ``fmnist_gui.sweep`` engine, watch it live.

``form.SweepForm`` turns the user's choices into a ``SweepPlan`` (or a message
naming what to fix); ``controller.SweepController`` runs the engine's
``WorkerPool`` off the GUI thread and owns the close guard; ``view.SweepView``
shows the form, the live plots and the protocol table, with the exports.
"""
