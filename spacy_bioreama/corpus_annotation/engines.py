"""Where the chunks are annotated: in this process, or on Ray Data.

Both engines take the pending shards and yield annotated chunk rows (`chunks`) in input
order, so the caller writes every shard the same way whichever engine ran it.

- `local`: `read_chunks` → `ChunkAnnotator.annotate`, one after the other, here.
- `ray`: a Ray Data pipeline over the same pieces -- shards → `flat_map(read_shard_rows)`
  → `map_batches(ChunkAnnotator, concurrency=N)` with actors that build the pipeline
  once and are restarted (and their chunk retried) if their process dies -- streamed
  back in order (`preserve_order`). Without `address` a local Ray is started for the
  run and stopped after it; with one (e.g. "auto") the run joins that cluster, whose
  nodes must have the package and the model installed.

Ray is an optional dependency (`pip install spacy-bioreama[ray]`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace

from ..pipeline.loading import PipelineSpec
from ..util.resources import available_cores
from .chunks import ChunkAnnotator, Row, Shard, read_chunks, read_shard_rows

ENGINES = ("local", "ray")
MAX_RESTARTS = 3  # per Ray worker: restarts after a crash, and retries of its chunk


@dataclass(frozen=True)
class EngineSettings:
    """How to run: `engine` ("local" or "ray"), Ray `workers`, `address` of a cluster
    to join (None: start a local one), `cpus_per_worker` (None: this machine's cores
    shared out, or 1 on a cluster) and `chunk_size` (documents per unit of work)."""

    engine: str = "local"
    workers: int = 1
    address: str | None = None
    cpus_per_worker: int | None = None
    chunk_size: int = 16

    def worker_cpus(self) -> int:
        """CPUs (and torch threads) each Ray worker gets."""
        if self.cpus_per_worker:
            return self.cpus_per_worker
        if self.address:
            return 1
        return max(1, available_cores() // max(1, self.workers))


def run_engine(
    shards: Sequence[Shard], spec: PipelineSpec, settings: EngineSettings, built=None
) -> Iterator[Row]:
    """Annotated chunk rows of `shards`, in order, from the chosen engine. `built`: the
    (nlp, component) of `spec` already built here (the local engine uses it)."""
    if settings.engine == "local":
        return _run_local(shards, spec, settings, built)
    if settings.engine == "ray":
        return _run_ray(shards, spec, settings)
    raise ValueError(f"unknown engine {settings.engine!r}; engines: {', '.join(ENGINES)}")


def _run_local(
    shards: Sequence[Shard], spec: PipelineSpec, settings: EngineSettings, built
) -> Iterator[Row]:
    annotator = ChunkAnnotator(spec, built=built)
    for shard in shards:
        for row in read_chunks(shard, spec, settings.chunk_size):
            yield annotator.annotate(row)


def import_ray():
    """`ray` and `ray.data`, or an ImportError saying how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "--engine ray needs Ray Data: pip install 'spacy-bioreama[ray]' "
            "(or pip install 'ray[data]')"
        ) from err
    return ray


def _run_ray(
    shards: Sequence[Shard], spec: PipelineSpec, settings: EngineSettings
) -> Iterator[Row]:
    ray = import_ray()
    cpus = settings.worker_cpus()
    gpus = 1 if spec.device.startswith("cuda") else 0
    if gpus:  # Ray shows each actor its one GPU as cuda:0
        spec = replace(spec, device="cuda")
    started = False
    if not ray.is_initialized():
        ray.init(
            address=settings.address,
            num_cpus=None if settings.address else available_cores(),
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            configure_logging=True,
        )
        started = True
    context = ray.data.DataContext.get_current()
    saved = (
        context.execution_options.preserve_order,
        context.enable_progress_bars,
        context.target_max_block_size,
    )
    try:
        if gpus and ray.cluster_resources().get("GPU", 0) < 1:
            raise ValueError("--device cuda with --engine ray, but the Ray cluster has no GPU")
        context.execution_options.preserve_order = True  # shards finish one after another
        context.enable_progress_bars = False  # ours counts documents
        context.target_max_block_size = 1  # each chunk its own block, spread over workers
        dataset = (
            ray.data.from_items([asdict(s) for s in shards])
            .flat_map(
                read_shard_rows,
                fn_kwargs={"spec": spec, "chunk_size": settings.chunk_size},
                num_cpus=0,  # reading is light; the CPUs go to the annotators
                concurrency=1,
            )
            .map_batches(
                ChunkAnnotator,
                fn_constructor_kwargs={"spec": spec, "threads": cpus},
                batch_size=1,
                batch_format="pyarrow",
                concurrency=settings.workers,
                num_cpus=cpus,
                num_gpus=gpus,
                # a dead worker is restarted and its chunk retried; a chunk that kills
                # its worker again and again fails the run instead of looping
                max_restarts=MAX_RESTARTS,
                max_task_retries=MAX_RESTARTS,
            )
        )
        yield from dataset.iter_rows()
    finally:
        (
            context.execution_options.preserve_order,
            context.enable_progress_bars,
            context.target_max_block_size,
        ) = saved
        if started:
            ray.shutdown()


__all__ = [
    "ENGINES",
    "MAX_RESTARTS",
    "EngineSettings",
    "available_cores",
    "import_ray",
    "run_engine",
]
