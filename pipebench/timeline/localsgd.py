"""LocalSGD: R pipelined replicas, each free of staleness, averaged every round."""

from pipebench.errors import InputError
from pipebench.schedules.base import Schedule
from pipebench.timeline.schedule import BARRIER_AVERAGE, Rules, one_f_one_b_caps


def _rules(stages: int, options: dict[str, object]) -> Rules:
    from pipebench.timeline.trace import MAX_STAGES  # NumPy: not for `pipebench list`

    replicas = int(options["replicas"])
    if replicas > MAX_STAGES:
        raise InputError("replicas", f"must be <= {MAX_STAGES}, got {replicas}")
    if int(options["fragments"]) > stages:
        raise InputError("fragments", f"must be <= stages ({stages}), got {options['fragments']}")
    overlap, local = int(options["overlap_steps"] or 0), int(options["local_steps"])
    if overlap > local:  # the average must be merged before the next round sends
        raise InputError("overlap_steps", f"must be <= local_steps ({local}), got {overlap}")
    return Rules(
        cap=one_f_one_b_caps(stages, options["inflight"]),
        accumulate=1,
        group=replicas * int(options["local_steps"]),
        barrier=BARRIER_AVERAGE,
        replicas=replicas,
        chain_replicas=True,
        avg_share=int(options["quantize"] or 32) / 32 / int(options["fragments"]),
        avg_overlap=overlap,
        avg_fragments=int(options["fragments"]),
    )


SCHEDULE = Schedule(
    name="localsgd",
    summary="LocalSGD: `replicas` pipelined models, `local_steps` each, then AVG (drain + refill); "
    "DiLoCo with `outer`, streaming DiLoCo with `fragments`, `overlap_steps` and `alpha`",
    synchronous=False,
    defaults=lambda stages: {
        "replicas": stages,
        "local_steps": 1,
        "inflight": "per-stage",
        "outer": None,
        "fragments": 1,
        "quantize": None,
        "overlap_steps": None,
        "alpha": None,
    },
    rules=_rules,
)
