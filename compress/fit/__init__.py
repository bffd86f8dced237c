"""The fit stage's rooms, in the order one fit goes through them (each imports only those
before it; compress/stages/fit.py ties them into the stage):

- ``space``: the step's options, the candidates the space spans, the plan workers share;
- ``artifacts``: random-weight models of a candidate's shape, its runtime files, timing, dev
  counts;
- ``probing``: every candidate probed shape-first, those over budget rejected, the rest ordered;
- ``int8``: an int8 candidate over the accuracy budget reverted in part to fp32;
- ``training``: one candidate pruned, recovered, converted and scored on dev;
- ``shared``: a study in a database machines share, its plan and trained candidates passed
  through an artifact folder, heartbeats;
- ``study``: the Optuna study the workers share, and the winner.
"""
