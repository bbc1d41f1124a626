"""Great Expectations (GX Core) suites over each staged platform batch.

The suites are GX Expectation Suite files, `include/quality/expectations/<batch>.json`. What must not drift
from the code is not copied into them: the status vocabularies (include/decide/enums.py) and the time
bounds of the run's clock are suite parameters (`{"$PARAMETER": name}`), supplied by `parameters`.
Each batch is validated by a GX Checkpoint (its ValidationDefinition and the suite); the result
goes to GX's validation results store, and once a run's batches are validated, one Data Docs build
renders their pages and the index. Each shop has a GX folder of its own, `shop_dir(shop)` under
`gx_dir()` (ORDEROPS_GX_DIR, default <state>/gx): its own results, Data Docs site and lock, so shops
neither wait for one another's validations nor prune one another's results. The SLA page serves
each shop's site. The code folder is only read.

A failed suite does not stop staging; it blocks the actions that depend on that platform's data
(see `include.store.run_store.RunStore.blocked_by_validation`) and is reported with the failing expectations.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from include.decide.enums import (
    AMAZON_ORDER_STATUSES,
    FULFILLMENT_TYPES,
    SHIPBOB_ORDER_STATUSES,
    TIKTOK_CANCEL_STATUSES,
    TIKTOK_ORDER_STATUSES,
)
from include.run.runconfig import STATE_DIR
from include.run.shops import SHOP_NAME

SUITES_DIR = Path(__file__).resolve().parent / "expectations"
GX_DIR_ENV = "ORDEROPS_GX_DIR"
KEEP_ENV = "ORDEROPS_GX_KEEP"
# Results kept per suite of a shop (older ones leave the store and Data Docs): the index page reads every
# result it lists, so an unbounded history would make each validation slower than the last.
KEEP_DEFAULT = 50
DOCS_SITE = "orderops"
# Under the GX root, the shops' GX folders; in each, GX's results store and the Data Docs site.
SHOPS_FOLDER = "shops"
RESULTS_FOLDER = "validations"
DOCS_FOLDER = "data_docs"
# A row of a Data Docs index (include/quality/data_docs/index.html), read back for the list of sites.
LISTED_RESULT = re.compile(r'<tr data-batch="[^"]*" data-run="[^"]*" data-success="(true|false)">')
# Data Docs pages compiled once per process (include/quality/gx_views.py)
PAGE_VIEW = {"module_name": "include.quality.gx_views", "class_name": "PageView"}
EARLIEST = pd.Timestamp("2015-01-01", tz="UTC")
# A platform time this far past the run's clock is a broken value (ship-by times lie days ahead).
AHEAD = timedelta(days=400)
# The parameters that bound the time columns: a column compared with them is parsed as a time.
TIME_BOUNDS = ("earliest_time", "latest_time")
# Which platform each staged batch belongs to.
BATCH_PLATFORM = {
    "tiktok_orders": "tiktok",
    "tiktok_cancellations": "tiktok",
    "shopify_orders": "shopify",
    "amazon_fulfillment_orders": "amazon_mcf",
    "shipbob_orders": "shipbob",
}
# Run names become folder names in the results store and Data Docs.
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class Outcome:
    batch: str
    success: bool
    rows: int
    failures: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        if self.success:
            return f"{self.batch}: {self.rows} rows, all expectations met"
        lines = [f"{self.batch}: {self.rows} rows, {len(self.failures)} expectation(s) failed"]
        lines += [
            f"  - {f['expectation']} on {f['column']}: {f['unexpected_count']} unexpected, e.g. {f['examples']}"
            for f in self.failures
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class ShopSite:
    """A shop's Data Docs site as its index lists it: when the index was built, how many results it
    lists (the newest ORDEROPS_GX_KEEP) and how many of them failed."""

    shop: str
    built_at: datetime
    results: int
    failed: int


def gx_dir() -> Path:
    """The GX root, under which each shop's GX folder is written (never the code folder)."""
    return Path(os.environ.get(GX_DIR_ENV) or STATE_DIR / "gx")


def shop_dir(shop: str, root: Path | None = None) -> Path:
    """`shop`'s GX folder: its results, Data Docs and lock. The name becomes a folder name, so only
    a name include.run.shops accepts is taken."""
    if not SHOP_NAME.match(shop):
        raise ValueError(f"shop {shop!r}: not a shop name")
    return (root or gx_dir()) / SHOPS_FOLDER / shop


def docs_dir(shop: str, root: Path | None = None) -> Path:
    """`shop`'s Data Docs site."""
    return shop_dir(shop, root) / DOCS_FOLDER


def shops_with_docs(root: Path | None = None) -> list[str]:
    """The shops whose Data Docs index has been built, by name (a shop folder that is a link is not
    served, so not listed)."""
    folder = (root or gx_dir()) / SHOPS_FOLDER
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if SHOP_NAME.match(p.name) and not p.is_symlink() and (p / DOCS_FOLDER / "index.html").is_file()
    )


def shared_site_left(root: Path | None = None) -> bool:
    """Whether a Data Docs site from before the shops' GX folders (every shop's results at the
    root) is still there: nothing updates, prunes or serves it any more."""
    return ((root or gx_dir()) / DOCS_FOLDER / "index.html").is_file()


def shop_sites(root: Path | None = None) -> list[ShopSite]:
    """Each shop's Data Docs site with what its index lists, by shop."""
    sites = []
    for shop in shops_with_docs(root):
        index = docs_dir(shop, root) / "index.html"
        try:
            built, listed = index.stat().st_mtime, LISTED_RESULT.findall(index.read_text())
        except OSError:  # removed since it was listed
            continue
        at = datetime.fromtimestamp(built, timezone.utc)
        sites.append(ShopSite(shop, at, len(listed), listed.count("false")))
    return sites


def run_name(shop: str, run_id: str) -> str:
    """What a run's results are named in the store and Data Docs (a folder name there)."""
    return UNSAFE.sub("_", f"{shop}/{run_id}")


def validation_page(docs: Path, batch: str, run: str) -> str | None:
    """The Data Docs page of `run`'s result for `batch` (the newest, after retries), relative to
    the site, or None when it was not built or has been pruned."""
    pages = sorted((docs / "validations" / batch / run).glob("*/*.html")) if UNSAFE.search(batch + run) is None else []
    return pages[-1].relative_to(docs).as_posix() if pages else None


def kept() -> int:
    return max(1, int(os.environ.get(KEEP_ENV) or KEEP_DEFAULT))


def parameters(now: datetime) -> dict[str, Any]:
    """The suite parameters, one definition each: the vocabularies and the run's time bounds."""
    return {
        "tiktok_order_statuses": list(TIKTOK_ORDER_STATUSES),
        "fulfillment_types": list(FULFILLMENT_TYPES),
        "tiktok_cancel_statuses": list(TIKTOK_CANCEL_STATUSES),
        "amazon_order_statuses": list(AMAZON_ORDER_STATUSES),
        "shipbob_order_statuses": list(SHIPBOB_ORDER_STATUSES),
        "earliest_time": EARLIEST,
        "latest_time": pd.Timestamp(now + AHEAD),
    }


def suite_document(batch: str) -> dict:
    """The batch's suite as its file holds it (GX's Expectation Suite JSON)."""
    return json.loads((SUITES_DIR / f"{batch}.json").read_text())


def referenced_parameters(value: Any) -> set[str]:
    """Every `$PARAMETER` name inside a suite document (or part of one)."""
    if isinstance(value, dict):
        found = {value["$PARAMETER"]} if "$PARAMETER" in value else set()
        return found.union(*(referenced_parameters(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(referenced_parameters(v) for v in value))
    return set()


def _columns(document: dict) -> tuple[list[str], list[str]]:
    """The columns a suite reads, and those of them it bounds in time."""
    columns, times = set(), set()
    for expectation in document["expectations"]:
        kwargs = expectation["kwargs"]
        if "column" not in kwargs:  # a table-level expectation
            continue
        columns.add(kwargs["column"])
        if referenced_parameters(kwargs) & set(TIME_BOUNDS):
            times.add(kwargs["column"])
    return sorted(columns), sorted(times)


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """One writer at a time per shop's GX folder: its Data Docs index page and static files are
    shared by its runs, and pruning removes results and pages another writer may be listing."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _context(gx, folder: Path, keep: int):
    """An in-memory context (suites, definitions) whose results and Data Docs are files under
    `folder`: no great_expectations.yml is written, so concurrent task processes share nothing but
    those files."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    stores[defaults.validation_results_store_name] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(folder / RESULTS_FOLDER),
            "suppress_store_backend_id": True,
        },
    }
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder / DOCS_FOLDER)},
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "validation_results_limit": keep,
            "view": {"module_name": "include.quality.gx_views", "class_name": "IndexPageView"},
        },
        "site_section_builders": {
            "validations": {"validation_results_limit": keep, "view": PAGE_VIEW},
            "expectations": {"view": PAGE_VIEW},
            "profiling": {"view": PAGE_VIEW},
        },
    }
    config = DataContextConfig(
        store_backend_defaults=defaults,
        stores=stores,
        data_docs_sites={DOCS_SITE: site},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )  # they would flood task logs
    return gx.get_context(project_config=config, mode="ephemeral")


def _prune(context, folder: Path, suite: str, keep: int) -> None:
    """Leave room for one more result of `suite`: older results leave the store (their Data Docs
    pages go with the next index build). Only the suite's own folder is listed."""
    store = context.validation_results_store
    keys = [store.tuple_to_key(k) for k in store.store_backend.list_keys((suite,))]
    for key in sorted(keys, key=lambda k: k.run_id.run_time, reverse=True)[keep - 1 :]:
        store.remove_key(key)
    _drop_empty(folder / RESULTS_FOLDER / suite)


def _drop_empty(folder: Path) -> None:
    """Remove the run folders a removed result or page leaves empty (every listing walks them)."""
    for path, _, _ in os.walk(folder, topdown=False):  # deepest first: a parent sees its emptied children gone
        if Path(path) != folder and not os.listdir(path):
            os.rmdir(path)


# This process's context and checkpoints per shop's GX folder, as (keep, context, checkpoints by
# batch): building them (suites, data sources, definitions) costs about as much as validating a
# small batch, and a process that runs the pipeline in a loop (run_all, the simulation) validates
# every batch of every run of several shops. About 0.1 MB each; past SITES_KEPT folders the least
# recently used goes.
_site: dict[Path, tuple[int, Any, dict[str, Any]]] = {}
_site_lock = threading.Lock()
SITES_KEPT = 256


def _checkpoint(gx, folder: Path, keep: int, batch: str):
    """The context for `folder` and `keep` and `batch`'s checkpoint in it, built on first use.
    Callers hold `_exclusive(folder)`, which also keeps threads of one process apart on a folder;
    `_site_lock` guards the cache the folders share."""
    with _site_lock:
        site = _site.pop(folder, None)  # put back below as the most recently used
    if site is None or site[0] != keep:
        context = _context(gx, folder, keep)
        # every suite, so the Data Docs index lists all five whichever batches a run validates
        for name in BATCH_PLATFORM:
            context.suites.add(gx.ExpectationSuite(**suite_document(name)))
        site = (keep, context, {})
    with _site_lock:
        _site[folder] = site
        while len(_site) > SITES_KEPT:
            del _site[next(iter(_site))]
    _, context, checkpoints = site
    if batch not in checkpoints:
        asset = context.data_sources.add_pandas(name=f"{batch}_source").add_dataframe_asset(name=batch)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=f"{batch}_validation",
                data=asset.add_batch_definition_whole_dataframe(f"{batch}_batch"),
                suite=context.suites.get(batch),
            )
        )
        # no UpdateDataDocsAction: `validate_batches` builds Data Docs once for all of a run's results
        checkpoints[batch] = context.checkpoints.add(
            gx.Checkpoint(name=f"{batch}_checkpoint", validation_definitions=[definition], result_format="SUMMARY")
        )
    return context, checkpoints[batch]


def _frame(batch: str, rows: list[dict]) -> pd.DataFrame:
    """The columns the batch's suite reads, its time columns parsed."""
    columns, times = _columns(suite_document(batch))
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    for column in times:
        frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce")
    return frame


def _outcome(batch: str, validation, rows: int) -> Outcome:
    failures = []
    for r in validation.results:
        if not r.success:
            examples = [str(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]]
            failures.append(
                {
                    "expectation": r.expectation_config.type,
                    "column": r.expectation_config.kwargs.get("column"),
                    "unexpected_count": r.result.get("unexpected_count"),
                    "examples": examples,
                }
            )
    return Outcome(batch, bool(validation.success), rows, failures)


def validate_batches(
    shop: str,
    batches: dict[str, list[dict]],
    now: datetime | None = None,
    run: str | None = None,
    index: bool = True,
) -> dict[str, Outcome]:
    """Run each of `shop`'s batches' checkpoint on its staged rows (the columns its suite reads),
    then build the shop's Data Docs once: the new results' pages and, with `index`, the index, which
    reads every result it lists, so one build per run rather than one per batch. `run` names the
    results in the store and Data Docs (the pipeline's: `run_name`); an empty batch passes without
    a result. Results, pages and the lock are the shop's own (`shop_dir`)."""
    import great_expectations as gx  # heavy import: only inside the validation task
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    folder, keep = shop_dir(shop), kept()
    now = now or datetime.now(timezone.utc)
    frames = {batch: _frame(batch, rows) for batch, rows in batches.items()}
    outcomes = {batch: Outcome(batch, True, 0) for batch, frame in frames.items() if frame.empty}
    checked = {batch: frame for batch, frame in frames.items() if not frame.empty}
    if not checked:
        return outcomes
    run_id = RunIdentifier(run_name=UNSAFE.sub("_", run) if run else None, run_time=datetime.now(timezone.utc))
    with _exclusive(folder):
        built = []
        try:
            for batch, frame in checked.items():
                context, checkpoint = _checkpoint(gx, folder, keep, batch)
                _prune(context, folder, batch, keep)
                result = checkpoint.run(
                    batch_parameters={"dataframe": frame}, expectation_parameters=parameters(now), run_id=run_id
                )
                ((identifier, validation),) = result.run_results.items()
                outcomes[batch] = _outcome(batch, validation, len(frame))
                built += [identifier, ExpectationSuiteIdentifier(name=batch)]
        finally:
            # results stored before a checkpoint that raised get their pages too: no stored result
            # waits for the task's retry to be seen
            if built:
                context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=built, build_index=index)
            for batch in checked:
                _drop_empty(folder / DOCS_FOLDER / "validations" / batch)
    return {batch: outcomes[batch] for batch in batches}
