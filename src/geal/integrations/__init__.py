"""Hand a selection to the tools around geal: labeling servers and dataset libraries.

Each module talks to one tool and imports it only inside the functions that need it,
so ``import geal`` never pulls in an optional tool:

- :mod:`geal.integrations.labelstudio`: push the tasks ``--to labelstudio`` wrote into a
  running Label Studio over its REST API (standard library only).
- :mod:`geal.integrations.fiftyone`: tag the picks, their rank and coverage radius on a
  FiftyOne dataset.
"""
