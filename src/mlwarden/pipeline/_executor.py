"""The local executor: runs steps in dependency order, reusing any step whose key is unchanged.

A step's cache key hashes its code version, parameters and input artifact hashes. Its start
and its completion (outputs, events, status) are each one store transaction, so a run killed
at any instant leaves either a completed step or an unfinished one that the next run redoes:
resuming is the cache doing its job.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from mlwarden._tasks import JoblibRunner, Runner, use_runner
from mlwarden._version import __version__
from mlwarden.errors import (
    GateRejectedError,
    MlwardenError,
    RecordNotFoundError,
    UnknownNameError,
)
from mlwarden.lineage import (
    LineageStore,
    Signer,
    hostname,
    remember_checkpoint,
    sha256_json,
    signer_for_store,
)
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._dag import SOURCE, StepDef, build_steps, spec_document
from mlwarden.pipeline._spec import AnySpec

StepStatus = Literal["executed", "cached", "failed", "rejected", "skipped"]
RunStatus = Literal["completed", "failed", "rejected"]


class Progress(Protocol):
    """Receives what the executor is doing, for a progress display."""

    def step_started(self, step: str) -> None: ...

    def step_message(self, step: str, message: str) -> None: ...

    def step_finished(self, step: str, status: StepStatus, seconds: float) -> None: ...


class _Silent:
    def step_started(self, step: str) -> None:
        pass

    def step_message(self, step: str, message: str) -> None:
        pass

    def step_finished(self, step: str, status: StepStatus, seconds: float) -> None:
        pass


class StepRun(BaseModel):
    """How one step went in a run."""

    step: str
    status: StepStatus
    execution_id: str | None
    cache_key: str
    seconds: float
    outputs: dict[str, str]
    error: str | None = None
    code_version: str = ""
    params: dict[str, Any] = {}
    inputs: dict[str, str] = {}


class RunResult(BaseModel):
    """The outcome of running a pipeline once."""

    run_id: str
    spec_name: str
    spec_sha256: str
    status: RunStatus
    steps: list[StepRun]
    artifacts: dict[str, str]
    model_version: str | None
    error: str | None = None
    exit_code: int = 0
    seconds: float

    @property
    def executed(self) -> list[str]:
        """Names of the steps that ran their code in this run."""
        return [s.step for s in self.steps if s.status == "executed"]

    @property
    def cached(self) -> list[str]:
        """Names of the steps reused from an earlier execution."""
        return [s.step for s in self.steps if s.status == "cached"]


def cache_key(step: StepDef, input_sha: dict[str, str]) -> str:
    """What identifies a step's work: its name, code version, parameters and inputs."""
    return sha256_json(
        {"step": step.name, "code": step.code_version, "params": step.params, "inputs": input_sha}
    )


class LocalExecutor:
    """Runs a pipeline in this process, recording everything in a lineage store.

    ``runner`` runs the independent work inside steps (reference models, surrogate fits):
    in this process by default, or ``JoblibRunner(n)`` for local worker processes.
    """

    name = "local"

    def __init__(
        self, store: LineageStore, progress: Progress | None = None, runner: Runner | None = None
    ) -> None:
        self.store = store
        self.progress: Progress = progress or _Silent()
        self.runner: Runner = runner or JoblibRunner()

    def call_step(self, step: StepDef, ctx: StepContext) -> dict[str, Output]:
        """Run the step's code: here, in this process."""
        with use_runner(self.runner):
            return step.fn(ctx)

    # -- cache -------------------------------------------------------------------------------

    def _outputs_of(self, execution_id: str) -> dict[str, str]:
        return {
            e.payload["role"]: e.key or ""
            for e in self.store.records("event", subject=execution_id)
            if e.payload["direction"] == "output"
        }

    def find_cached(self, step: StepDef, key: str) -> tuple[str, dict[str, str]] | None:
        """A completed execution with this key whose output files are all intact."""
        for start in self.store.records("execution_started", key=key, newest_first=True):
            ended = self.store.records("execution_ended", subject=start.subject)
            if not ended or ended[0].payload["status"] != "completed":
                continue
            outputs = self._outputs_of(start.subject)
            if set(outputs) != set(step.outputs):
                continue
            intact = True
            for sha in outputs.values():
                record = self.store.artifact_record(sha)
                if record is None or self.store.artifacts.check(sha, record.payload["size"]):
                    intact = False
                    break
            if intact:
                return start.subject, outputs
        return None

    # -- running -----------------------------------------------------------------------------

    def run(
        self, spec: AnySpec, signer: Signer | None = None, *, only: str | None = None
    ) -> RunResult:
        """Run every step of ``spec`` in order, reusing cached ones; never raises for a step.

        ``only``: run that one step (a component of an orchestrated pipeline): every step
        before it must already be done for these inputs (a cache hit), the steps after it
        are left for their own components.
        """
        steps, sources = build_steps(spec)
        if only is not None and only not in {s.name for s in steps}:
            raise UnknownNameError(
                f"no step {only!r} in pipeline {spec.name}; steps: {[s.name for s in steps]}"
            )
        run_id = uuid.uuid4().hex
        began = time.perf_counter()
        spec_sha = spec.digest()
        with self.store.transaction() as tx:
            spec_artifact = self.store.put_artifact(
                spec_document(spec), name="spec.yaml", media_type="application/yaml", tx=tx
            )
            available = {
                f"{SOURCE}.{name}": self.store.put_artifact(
                    out.data, name=out.name, media_type=out.media_type, tx=tx
                )
                for name, out in sources.items()
            }
            tx.append(
                "run_started",
                run_id,
                {
                    "pipeline": spec.name,
                    "spec_sha256": spec_sha,
                    "spec_artifact": spec_artifact,
                    "mlwarden": __version__,
                    "host": hostname(),
                    "steps": [s.name for s in steps],
                    "executor": self.name,
                },
            )
        run_ctx: dict[str, Any] = {
            "run_id": run_id,
            "spec_sha256": spec_sha,
            # Loaded (or created) only when a step signs something: a cached run never does.
            "signer": lambda: signer or signer_for_store(self.store.root),
        }
        results: list[StepRun] = []
        status: RunStatus = "completed"
        error: str | None = None
        exit_code = 0
        model_version: str | None = None
        for step in steps:
            input_sha = {role: available[ref] for role, ref in step.inputs.items()}
            key = cache_key(step, input_sha)
            self.progress.step_started(step.name)
            started = time.perf_counter()
            cached = self.find_cached(step, key)
            if cached is None and only is not None and step.name != only:
                status, exit_code = "failed", RecordNotFoundError.exit_code
                error = (
                    f"step {step.name} has not run on these inputs, so step {only} cannot: "
                    "run the pipeline's steps in order"
                )
                self.progress.step_finished(step.name, "skipped", 0.0)
                break
            if cached is not None:
                execution_id, outputs = cached
                self.store.append(
                    "cache_hit", run_id, {"step": step.name, "execution_id": execution_id}, key=key
                )
                run = StepRun(
                    step=step.name,
                    status="cached",
                    execution_id=execution_id,
                    cache_key=key,
                    seconds=time.perf_counter() - started,
                    outputs=outputs,
                )
            else:
                run, exit_code = self._execute(step, key, input_sha, run_ctx)
            run = run.model_copy(
                update={"code_version": step.code_version, "params": step.params,
                        "inputs": input_sha}
            )  # fmt: skip
            results.append(run)
            self.progress.step_finished(step.name, run.status, run.seconds)
            available.update({f"{step.name}.{role}": sha for role, sha in run.outputs.items()})
            if step.registers and run.execution_id and run.status in ("executed", "cached"):
                versions = self.store.records("model_version", key=run.execution_id)
                if versions:
                    manifest = versions[0].payload["manifest"]
                    model_version = f"{manifest['name']}@{manifest['version']}"
            if run.status in ("failed", "rejected"):
                status = run.status
                error = f"{step.name}: {run.error}"
                break
            if step.name == only:
                break
        done = {r.step for r in results}
        results += [
            StepRun(
                step=s.name,
                status="skipped",
                execution_id=None,
                cache_key="",
                seconds=0.0,
                outputs={},
                code_version=s.code_version,
                params=s.params,
            )
            for s in steps
            if s.name not in done
        ]
        self.store.append(
            "run_ended",
            run_id,
            {
                "status": status,
                "error": error,
                "model_version": model_version,
                "artifacts": {k: v for k, v in available.items()},
            },
        )
        if status == "completed":
            # A signed checkpoint of the chain so far: cutting it short is caught from now on,
            # and rolling it back past this point by the copy kept in the key dir.
            signer = run_ctx["signer"]()
            remember_checkpoint(self.store, self.store.checkpoint(signer), signer)
        return RunResult(
            run_id=run_id,
            spec_name=spec.name,
            spec_sha256=spec_sha,
            status=status,
            steps=results,
            artifacts=available,
            model_version=model_version,
            error=error,
            exit_code=exit_code,
            seconds=time.perf_counter() - began,
        )

    def _execute(
        self, step: StepDef, key: str, input_sha: dict[str, str], run_ctx: dict[str, Any]
    ) -> tuple[StepRun, int]:
        """Run one step and record it; how it went, and the exit code its failure calls for."""
        execution_id = uuid.uuid4().hex
        with self.store.transaction() as tx:
            tx.append(
                "execution_started",
                execution_id,
                {
                    "step": step.name,
                    "run_id": run_ctx["run_id"],
                    "params": step.params,
                    "code_version": step.code_version,
                    "cache_key": key,
                    "host": hostname(),
                    "pid": os.getpid(),
                },
                key=key,
            )
            for role, sha in input_sha.items():
                tx.append("event", execution_id, {"direction": "input", "role": role}, key=sha)
        ctx = StepContext(
            step=step.name,
            params=step.params,
            run={**run_ctx, "input_sha": input_sha},
            _read=lambda role: self.store.read_artifact(input_sha[role]),
            _progress=lambda message: self.progress.step_message(step.name, message),
            _path=lambda role: self.store.artifact_path(input_sha[role]),
        )
        try:
            return self._call_and_record(step, ctx, execution_id, key)
        finally:
            ctx.close()

    def _call_and_record(
        self, step: StepDef, ctx: StepContext, execution_id: str, key: str
    ) -> tuple[StepRun, int]:
        started = time.perf_counter()
        try:
            produced = self.call_step(step, ctx)
        except BaseException as exc:
            rejected = isinstance(exc, GateRejectedError)
            stored = self._complete(
                execution_id,
                ctx.kept,
                "rejected" if rejected else "failed",
                started,
                error=str(exc) or type(exc).__name__,
                records=[],
            )
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like: recorded, then passed on
            exit_code = exc.exit_code if isinstance(exc, MlwardenError) else 1
            message = str(exc) if isinstance(exc, MlwardenError) else f"{type(exc).__name__}: {exc}"
            failed = StepRun(
                step=step.name,
                status="rejected" if rejected else "failed",
                execution_id=execution_id,
                cache_key=key,
                seconds=time.perf_counter() - started,
                outputs=stored,
                error=message,
            )
            return failed, exit_code
        missing = set(step.outputs) - set(produced)
        if missing:
            raise MlwardenError(f"step {step.name} did not produce {sorted(missing)}")
        outputs = self._complete(execution_id, produced, "completed", started, records=ctx.records)
        done = StepRun(
            step=step.name,
            status="executed",
            execution_id=execution_id,
            cache_key=key,
            seconds=time.perf_counter() - started,
            outputs=outputs,
        )
        return done, 0

    def _complete(
        self,
        execution_id: str,
        outputs: dict[str, Output],
        status: str,
        started: float,
        *,
        error: str | None = None,
        records: list[Any],
    ) -> dict[str, str]:
        stored: dict[str, str] = {}
        with self.store.transaction() as tx:
            for role, out in outputs.items():
                sha = self.store.put_artifact(
                    out.data, name=out.name, media_type=out.media_type, tx=tx
                )
                tx.append("event", execution_id, {"direction": "output", "role": role}, key=sha)
                stored[role] = sha
            for build in records:
                kind, subject, payload = build(tx)
                tx.append(kind, subject, payload, key=execution_id)
            tx.append(
                "execution_ended",
                execution_id,
                {"status": status, "error": error, "seconds": time.perf_counter() - started},
            )
        return stored
