"""Sweeps: each optimizer tuned on the same budget with Optuna, then its best setting
retrained with several seeds (the protocol of DeepOBS and of Schmidt et al., 2021).

No Qt here. The modules, from the bottom up:

* ``space``: a search space from an optimizer plugin's ``Param`` schema;
* ``spec``: the whole sweep's settings (``SweepSpec``), stored with its studies;
* ``storage``: Optuna's RDB storage (SQLite by default, PostgreSQL to scale out);
* ``study``: the sweep's studies in that storage, budgets and status (``Sweep``);
* ``worker``: runs trials, one ``Trainer`` each, reporting ``events``;
* ``pool``: worker processes on this machine;
* ``results``, ``stats``, ``report``: the protocol table, CSV and plots;
* ``cli``: ``fmnist-sweep``.
"""
