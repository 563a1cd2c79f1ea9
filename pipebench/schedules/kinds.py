"""The kinds of operation schedules are written in and traces record (`Trace.kind`).

The greedy schedules use the first four; programs split the backward into its
input-gradient part I and weight-gradient part W, and write an F&B pair (a
forward overlapped with a full backward on one rank) as two trace rows with
the same start and end: its forward half and its backward half.
"""

FORWARD = 0
BACKWARD = 1
UPDATE = 2
AVERAGE = 3
INPUT_GRAD = 4
WEIGHT_GRAD = 5
PAIR_FORWARD = 6
PAIR_BACKWARD = 7
KIND_NAMES = ("F", "B", "U", "AVG", "I", "W", "F&B:F", "F&B:B")
