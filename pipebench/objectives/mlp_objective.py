"""The MLP objective: a student residual MLP learning from a teacher of the same shape.

The teacher is the same architecture with weights drawn at a larger scale
(so its function is far from linear) and its head rescaled to give outputs
of unit variance; inputs are standard normal. For regression the targets
are its outputs (plus optional label noise), which
the student can match exactly: f* = 0 without noise. For classification the
labels are the argmax of its outputs.
"""

from __future__ import annotations

import numpy as np

from pipebench.objectives import mlp
from pipebench.objectives.layered import Layered
from pipebench.objectives.sketch import SAMPLING_CODES

TEACHER_GAIN = 4.0
STUDENT_GAIN = 1.0


def build_mlp(spec, stages: int) -> Layered:
    """The objective an `MlpSpec` describes, split one residual block per stage."""
    task = mlp.TASKS[spec.task]
    outputs = spec.classes if task == mlp.CLASSIFICATION else spec.outputs
    n, d_in, width = spec.examples, spec.inputs, spec.width
    shape = np.array(
        [d_in, width, outputs, stages, mlp.ACTIVATIONS[spec.activation], task, spec.batch_size],
        dtype=np.int64,
    )
    off = mlp.layout(d_in, width, outputs, stages)
    rng = np.random.default_rng(spec.seed)
    teacher = mlp.init(d_in, width, outputs, stages, rng, TEACHER_GAIN)
    x = rng.standard_normal((n, d_in))
    out = mlp.predict(shape, off, teacher, x)
    out = out / out.std(axis=0)  # unit-variance outputs: a rescaled head, still a teacher
    if task == mlp.REGRESSION:
        targets = out + spec.label_noise * rng.standard_normal(out.shape)
        labels = np.zeros(0, dtype=np.int64)
        what = (
            f"teacher-student regression, {n} examples, {d_in} -> {width} x {stages} -> {outputs}"
        )
    else:
        targets = np.zeros((0, 0))
        labels = np.argmax(out, axis=1).astype(np.int64)
        what = f"teacher-student classification, {n} examples, {outputs} classes, width {width}"
    return Layered(
        kind="mlp",
        description=f"{what}, {spec.activation}",
        spec=shape,
        off=off,
        act_size=spec.batch_size * width,
        saved_size=mlp.saved_sizes(shape),
        matrices=mlp.matrices(d_in, width, stages, off),
        init=mlp.init(d_in, width, outputs, stages, rng, STUDENT_GAIN),
        data_f=np.ascontiguousarray(x),
        data_t=np.ascontiguousarray(targets),
        data_i=labels,
        examples=n,
        eval_rows=np.arange(n, dtype=np.int64),
        sampling=SAMPLING_CODES[spec.sampling],
        batch_size=spec.batch_size,
        f_star=0.0 if task == mlp.REGRESSION and spec.label_noise == 0 else None,
    )
