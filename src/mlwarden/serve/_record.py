"""The decision record of an answered request, queued after the response is sent (with the
shadow model's answer to the same rows).

What is queued is plain values (:class:`~mlwarden.serve._decisions.PendingDecision`): the
decision writer's thread validates, serialises, hashes and chains the record, off the request
path, into the same stored bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.serve._guarded import Guarded
    from mlwarden.serve._runtime import ServedModel


def log_decision(
    g: Guarded,
    request_id: str,
    client: str,
    model: ServedModel,
    rows: list[dict[str, Any]],
    frame: pd.DataFrame | None,
    output: list[dict[str, Any]],
    verdicts: dict[str, Any],
    fail_open: list[str],
    latency_ms: float,
    *,
    endpoint: Literal["predict", "explain"] = "predict",
) -> None:
    """After the response: the shadow model's answer, then the decision, queued for the log.

    ``frame``: the rows as the table the shadow model reads (None: built here from ``rows``
    when there is a shadow model).
    """
    from mlwarden.serve._decisions import PendingDecision, ShadowResult

    shadow: list[ShadowResult] = []
    if g.shadow is not None:
        try:
            if frame is None:  # the request path built none: the model read a bare matrix
                import pandas as pd

                frame = pd.DataFrame(rows, columns=g.schema.features)
            proba = g.shadow.predict_proba(frame)
            labels = g.shadow.classes[proba.argmax(axis=1)].tolist()
            answer: Any = {"labels": labels, "probabilities": proba.round(6).tolist()}
            served = [o.get("label") for o in output]
            differ = sum(str(a) != str(b) for a, b in zip(labels, served, strict=True))
            if differ:
                g.metrics.shadow_disagreements.labels(model=g.shadow.ref).inc(differ)
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        shadow.append(ShadowResult(model_ref=g.shadow.ref, output=answer))
    g.decisions.append(
        PendingDecision(
            request_id=request_id,
            endpoint=endpoint,
            client=client,
            model_ref=model.ref,
            model_sha256=model.version.manifest.model_sha256,
            lineage_head=g.lineage_head,
            input=rows,
            output=output,
            guards=verdicts,
            fail_open=fail_open,
            shadow=shadow,
            latency_ms=latency_ms,
        )
    )
