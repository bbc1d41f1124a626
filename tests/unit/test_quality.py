"""Great Expectations suites on staged batches: good data passes, each kind of bad data is named;
the suites are GX suite files fed their parameters by the code; each run leaves a stored result and
a Data Docs page in its shop's GX folder, several processes at once included, and shops neither
share a lock nor prune one another's results."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import re
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from include.quality.checkpoints import (
    BATCH_PLATFORM,
    GX_DIR_ENV,
    KEEP_ENV,
    SUITES_DIR,
    docs_dir,
    parameters,
    referenced_parameters,
    shop_dir,
    shop_sites,
    suite_document,
    validate_batches,
)
from include.quality.gx_views import offline
from tests.support import NOW


def tiktok_row(order_id="576000000000000001", status="AWAITING_SHIPMENT", create=NOW):
    return {
        "tiktok_order_id": order_id,
        "status": status,
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "create_time": create,
        "update_time": create,
        "rts_sla_time": create,
    }


SHOP = "default"


def validate(batch: str, rows: list[dict], now: datetime, run: str | None = None, shop: str = SHOP):
    """One batch's outcome, as the pipeline validates a run's batches."""
    return validate_batches(shop, {batch: rows}, now, run)[batch]


def kept_runs(folder: Path, batch: str = "shipbob_orders") -> list[str]:
    """The runs whose results (or pages) of `batch` a results store (or Data Docs site) keeps."""
    return sorted(p.name for p in (folder / "validations" / batch).iterdir())


@pytest.fixture
def gx_folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(GX_DIR_ENV, str(tmp_path / "gx"))
    return tmp_path / "gx"


def test_clean_batch_passes():
    outcome = validate("tiktok_orders", [tiktok_row(), tiktok_row("576000000000000002")], NOW)
    assert outcome.success and outcome.rows == 2 and outcome.failures == []


def test_each_failure_is_named_with_examples():
    rows = [
        tiktok_row(),
        tiktok_row(),
        tiktok_row("576x", status="TELEPORTED"),
        tiktok_row("576000000000000009", create=datetime(1999, 1, 1, tzinfo=timezone.utc)),
    ]
    outcome = validate("tiktok_orders", rows, NOW)
    assert not outcome.success
    failed = {(f["expectation"], f["column"]) for f in outcome.failures}
    assert ("expect_column_values_to_be_unique", "tiktok_order_id") in failed
    assert ("expect_column_values_to_be_in_set", "status") in failed
    assert ("expect_column_values_to_match_regex", "tiktok_order_id") in failed
    assert ("expect_column_values_to_be_between", "create_time") in failed
    assert "TELEPORTED" in outcome.describe()


def test_empty_batch_is_not_a_failure():
    assert validate("shipbob_orders", [], NOW).success


def test_suite_files_are_gx_suites_fed_every_parameter_they_use():
    import great_expectations as gx

    assert sorted(p.stem for p in SUITES_DIR.glob("*.json")) == sorted(BATCH_PLATFORM)
    supplied = parameters(NOW)
    used = set()
    for batch in BATCH_PLATFORM:
        document = suite_document(batch)
        suite = gx.ExpectationSuite(**document)
        assert suite.name == batch and len(suite.expectations) == len(document["expectations"])
        used |= referenced_parameters(document)
    assert used - supplied.keys() == set()  # nothing a suite asks for is missing
    assert supplied.keys() - used == set()  # and nothing supplied is unused
    # the vocabulary is the code's: a status enums.py knows passes, one it does not know fails
    assert validate(
        "amazon_fulfillment_orders", [{"seller_fulfillment_order_id": "1", "status": "Complete"}], NOW
    ).success
    assert not validate(
        "amazon_fulfillment_orders", [{"seller_fulfillment_order_id": "1", "status": "Lost"}], NOW
    ).success


def test_a_run_stores_its_result_and_a_data_docs_page_the_sla_app_serves(gx_folder):
    from include.report.sla_ui import create_app

    before = {p.name: p.stat().st_mtime_ns for p in SUITES_DIR.iterdir()}
    outcome = validate(
        "tiktok_orders",
        [tiktok_row(), tiktok_row(status="TELEPORTED")],
        NOW,
        run="default/scheduled__2026-11-20T15:00:00+00:00",
    )
    assert not outcome.success
    run = "default_scheduled__2026-11-20T15_00_00_00_00"
    (stored,) = (gx_folder / "shops" / SHOP / "validations" / "tiktok_orders" / run).glob("*/*.json")
    result = json.loads(stored.read_text())
    assert result["success"] is False and result["meta"]["run_id"]["run_name"] == run
    (page,) = (docs_dir(SHOP) / "validations" / "tiktok_orders" / run).glob("*/*.html")
    index = (docs_dir(SHOP) / "index.html").read_text()
    link = page.relative_to(docs_dir(SHOP)).as_posix()
    assert link in index and "expectations/tiktok_orders.html" in index
    assert {p.name: p.stat().st_mtime_ns for p in SUITES_DIR.iterdir()} == before  # the code folder is only read
    assert sorted(p.name for p in gx_folder.iterdir()) == ["shops"]  # nothing shared by shops at the root
    app = TestClient(create_app(f"sqlite:///{gx_folder.parent / 'wh.db'}", gx_folder.parent, gx_root=gx_folder))
    served = app.get(f"/data-docs/{SHOP}/{link}")
    assert served.status_code == 200 and "TELEPORTED" in served.text
    assert app.get(f"/data-docs/{SHOP}/").text == (docs_dir(SHOP) / "index.html").read_text()
    assert f'href="{SHOP}/"' in app.get("/data-docs/").text


def test_data_docs_pages_fetch_nothing_from_outside_and_run_no_script(gx_folder):
    validate("tiktok_orders", [tiktok_row(), tiktok_row(status="TELEPORTED")], NOW, run="default/run-1")
    validate(
        "shipbob_orders", [{"shipbob_order_id": "1", "status": "Processing"}], NOW, run="my_shop/run-2", shop="my_shop"
    )
    pages = sorted(docs_dir(SHOP).rglob("*.html")) + sorted(docs_dir("my_shop").rglob("*.html"))
    assert len(pages) == 6  # per shop: the index, a result, its suite's page
    for page in pages:
        html = page.read_text()
        assert "<script" not in html, page
        # no stylesheet, script, image or CSS background from another host (plain links may point out)
        for tag in re.findall(r"<(?:link|img|script)\b[^>]*>", html) + re.findall(r"url\([^)]*\)", html):
            assert "//" not in tag, (page, tag)
        assert "orderops' own stylesheet" in html or page.name == "index.html", page
    for shop, expected in (
        (SHOP, [("tiktok_orders", "default_run-1", "false")]),
        ("my_shop", [("shipbob_orders", "my_shop_run-2", "true")]),
    ):  # each shop's index lists its own results only
        index = (docs_dir(shop) / "index.html").read_text()
        listed = re.findall(r'<tr data-batch="([a-z_]+)" data-run="([^"]+)" data-success="(true|false)">', index)
        assert listed == expected
        for batch, run, _ in listed:
            (page,) = (docs_dir(shop) / "validations" / batch / run).glob("*/*.html")
            assert f'href="{page.relative_to(docs_dir(shop)).as_posix()}"' in index


def test_offline_takes_out_scripts_and_outside_assets_and_keeps_the_rest():
    html = (
        '<head><link rel="stylesheet" href="https://cdn.example/b.css"/><link rel="icon" href="static/f.ico">'
        '<script src="https://cdn.example/j.js"></script><script>$(".x").fadeIn();</script>'
        "<style>.a{background:url('https://cdn.example/logo.png') 0 0}.b{background:url(static/i.png)}</style>"
        '</head><body><a href="../index.html"><img src="//cdn.example/logo.png" alt="GX"/></a>'
        '<a href="https://example.org/docs">docs</a><table class="table"><tr><td>TELEPORTED</td></tr></table></body>'
    )
    out = offline(html)
    assert "<script" not in out and "cdn.example" not in out
    assert '<link rel="icon" href="static/f.ico">' in out and "url(static/i.png)" in out  # its own server's
    assert '<a href="https://example.org/docs">docs</a>' in out and "<td>TELEPORTED</td>" in out
    assert '<a href="../index.html"><span class="orderops-brand">' in out


def test_a_runs_batches_are_validated_in_turn_and_their_data_docs_built_once(gx_folder, monkeypatch):
    """The index reads every result it lists, so a run's batches share one Data Docs build."""
    from great_expectations.data_context.data_context.abstract_data_context import AbstractDataContext

    builds = []
    build = AbstractDataContext.build_data_docs
    monkeypatch.setattr(
        AbstractDataContext,
        "build_data_docs",
        lambda self, *a, **kw: builds.append(kw["resource_identifiers"]) or build(self, *a, **kw),
    )
    run = "default_manual__1"
    outcomes = validate_batches(
        SHOP,
        {
            "tiktok_orders": [tiktok_row()],
            "shipbob_orders": [{"shipbob_order_id": 7, "status": "Beamed"}],
            "amazon_fulfillment_orders": [],
            "shopify_orders": [{"shopify_order_id": 1, "name": "#1001", "updated_at": NOW}],
        },
        NOW,
        run=run,
    )
    assert list(outcomes) == ["tiktok_orders", "shipbob_orders", "amazon_fulfillment_orders", "shopify_orders"]
    assert [(o.success, o.rows) for o in outcomes.values()] == [(True, 1), (False, 1), (True, 0), (True, 1)]
    assert outcomes["shipbob_orders"].failures[0]["examples"] == ["Beamed"]
    assert len(builds) == 1 and len(builds[0]) == 6  # three results and their suites' pages
    index = (docs_dir(SHOP) / "index.html").read_text()
    for batch in ("tiktok_orders", "shipbob_orders", "shopify_orders"):
        (stored,) = (shop_dir(SHOP) / "validations" / batch / run).glob("*/*.json")
        (page,) = (docs_dir(SHOP) / "validations" / batch / run).glob("*/*.html")
        assert page.relative_to(docs_dir(SHOP)).as_posix() in index
        assert page.parent.name == stored.parent.name  # one run time for the run's results
    # an empty batch leaves no result
    assert not (shop_dir(SHOP) / "validations" / "amazon_fulfillment_orders").exists()


def test_an_event_runs_results_get_their_pages_and_the_next_indexed_run_lists_them(gx_folder):
    """An event wake does not rebuild the index (it read every result it lists); the shop's next
    scheduled run's build lists the wake's results with its own."""
    wake, scheduled = "default_asset_triggered__1", "default_scheduled__2"
    validate_batches(SHOP, {"tiktok_orders": [tiktok_row()]}, NOW, run=wake, index=False)
    (page,) = (docs_dir(SHOP) / "validations" / "tiktok_orders" / wake).glob("*/*.html")
    assert not (docs_dir(SHOP) / "index.html").exists()
    validate_batches(SHOP, {"tiktok_orders": [tiktok_row()]}, NOW, run=scheduled)
    index = (docs_dir(SHOP) / "index.html").read_text()
    assert page.relative_to(docs_dir(SHOP)).as_posix() in index and scheduled in index


def test_a_checkpoint_that_raises_leaves_the_results_before_it_with_their_pages(gx_folder, monkeypatch):
    """A failure part-way (a disk, a GX error) stops the run's validation, but what was stored is
    shown: the earlier batches' pages are built before the error goes on to the task."""
    from great_expectations.checkpoint.checkpoint import Checkpoint

    run_checkpoint = Checkpoint.run

    def run(self, *args, **kwargs):
        if self.name.startswith("shopify_orders"):
            raise OSError("No space left on device")
        return run_checkpoint(self, *args, **kwargs)

    monkeypatch.setattr(Checkpoint, "run", run)
    run_name = "default_manual__2"
    with pytest.raises(OSError, match="No space left"):
        validate_batches(
            SHOP,
            {
                "tiktok_orders": [tiktok_row()],
                "shopify_orders": [{"shopify_order_id": 1, "name": "#1001", "updated_at": NOW}],
            },
            NOW,
            run=run_name,
        )
    (page,) = (docs_dir(SHOP) / "validations" / "tiktok_orders" / run_name).glob("*/*.html")
    assert page.relative_to(docs_dir(SHOP)).as_posix() in (docs_dir(SHOP) / "index.html").read_text()
    assert not (shop_dir(SHOP) / "validations" / "shopify_orders").exists()


def test_only_the_newest_results_are_kept_per_suite(gx_folder, monkeypatch):
    monkeypatch.setenv(KEEP_ENV, "2")
    for n in range(3):
        assert validate("shipbob_orders", [{"shipbob_order_id": n, "status": "Fulfilled"}], NOW, run=f"run-{n}").success
    assert kept_runs(shop_dir(SHOP)) == kept_runs(docs_dir(SHOP)) == ["run-1", "run-2"]
    assert "run-0" not in (docs_dir(SHOP) / "index.html").read_text()


def test_a_shops_pruning_never_removes_another_shops_results(gx_folder, monkeypatch):
    """ORDEROPS_GX_KEEP counts per shop: a busy shop's runs do not push a quiet shop's failed result
    (and the SLA page's link to it) out."""
    monkeypatch.setenv(KEEP_ENV, "1")
    failed = validate("shipbob_orders", [{"shipbob_order_id": 1, "status": "Beamed"}], NOW, "quiet/run-0", "quiet")
    assert not failed.success
    for n in range(3):
        validate("shipbob_orders", [{"shipbob_order_id": n, "status": "Fulfilled"}], NOW, f"busy/run-{n}", "busy")
    assert kept_runs(shop_dir("busy")) == kept_runs(docs_dir("busy")) == ["busy_run-2"]
    assert kept_runs(shop_dir("quiet")) == kept_runs(docs_dir("quiet")) == ["quiet_run-0"]
    assert "quiet_run-0" in (docs_dir("quiet") / "index.html").read_text()
    sites = {site.shop: (site.results, site.failed) for site in shop_sites()}
    assert sites == {"busy": (1, 0), "quiet": (1, 1)}


def test_two_shops_validating_leave_separate_folders_locks_and_indexes(gx_folder):
    validate("tiktok_orders", [tiktok_row(status="TELEPORTED")], NOW, "north/run-1", "north")
    validate("tiktok_orders", [tiktok_row()], NOW, "south/run-1", "south")
    assert sorted(p.name for p in (gx_folder / "shops").iterdir()) == ["north", "south"]
    for shop, other in (("north", "south"), ("south", "north")):
        assert sorted(p.name for p in shop_dir(shop).iterdir()) == [".lock", "data_docs", "validations"]
        assert kept_runs(shop_dir(shop), "tiktok_orders") == [f"{shop}_run-1"]
        index = (docs_dir(shop) / "index.html").read_text()
        assert f"{shop}_run-1" in index and f"{other}_run-1" not in index


def test_a_shop_waits_only_for_its_own_lock(gx_folder):
    """While one of north's validations holds north's lock, south's validation goes ahead and
    north's next one waits."""
    validate("shipbob_orders", [{"shipbob_order_id": 1, "status": "Fulfilled"}], NOW, "north/run-0", "north")
    finished: dict[str, bool] = {}

    def run(shop: str) -> threading.Thread:
        def work() -> None:
            row = {"shipbob_order_id": 2, "status": "Fulfilled"}
            finished[shop] = validate("shipbob_orders", [row], NOW, f"{shop}/run-1", shop).success

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        return thread

    with open(shop_dir("north") / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another task's validation of north, as far as the lock goes
        north, south = run("north"), run("south")
        south.join(timeout=60)
        assert finished == {"south": True}
        north.join(timeout=1)
        assert north.is_alive() and "north" not in finished
        fcntl.flock(held, fcntl.LOCK_UN)
    north.join(timeout=60)
    assert finished == {"south": True, "north": True}


def test_a_shop_name_that_is_no_folder_name_is_refused(gx_folder):
    for shop in ("..", "../default", "Default", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="not a shop name"):
            validate("tiktok_orders", [tiktok_row()], NOW, "run-1", shop)
    assert not gx_folder.exists() or not any(gx_folder.rglob("*.json"))


def test_one_process_keeps_a_context_per_gx_folder(tmp_path, monkeypatch):
    """A process validating several shops (the simulation, run_all) keeps each shop's context: it
    is built once per shop's folder, each result goes to its own folder, and a new KEEP takes
    effect at once."""
    from include.quality import checkpoints

    built = []
    context = checkpoints._context
    monkeypatch.setattr(
        checkpoints, "_context", lambda gx, folder, keep: built.append(folder) or context(gx, folder, keep)
    )
    first, second = tmp_path / "first", tmp_path / "second"
    moves = [(first, SHOP, "run-a"), (second, SHOP, "run-b"), (first, "north", "run-c"), (first, SHOP, "run-d")]
    for root, shop, run in moves + [(second, SHOP, "run-e"), (first, "north", "run-f")]:
        monkeypatch.setenv(GX_DIR_ENV, str(root))
        assert validate("shipbob_orders", [{"shipbob_order_id": run, "status": "Fulfilled"}], NOW, run, shop).success
    assert built == [shop_dir(shop, root) for root, shop, _ in moves[:3]]
    assert kept_runs(shop_dir(SHOP, first)) == ["run-a", "run-d"]
    assert kept_runs(shop_dir("north", first)) == ["run-c", "run-f"]
    assert kept_runs(shop_dir(SHOP, second)) == ["run-b", "run-e"]
    index = (docs_dir(SHOP, first) / "index.html").read_text()
    assert "run-a" in index and "run-d" in index and "run-b" not in index and "run-c" not in index
    monkeypatch.setenv(KEEP_ENV, "1")
    assert validate("shipbob_orders", [{"shipbob_order_id": "g", "status": "Fulfilled"}], NOW, run="run-g").success
    assert kept_runs(shop_dir(SHOP, first)) == ["run-g"]


def _validate_in_child(folder: str, worker: int, done) -> None:
    import os

    os.environ[GX_DIR_ENV] = folder
    try:
        for n in range(2):
            outcome = validate(
                "shipbob_orders",
                [{"shipbob_order_id": f"{worker}-{n}", "status": "Cancelled"}],
                NOW,
                run=f"{SHOP}/run-{worker}-{n}",
            )
            assert outcome.success, outcome.describe()
        done.put((worker, "ok"))
    except BaseException as exc:  # the parent reports it
        done.put((worker, repr(exc)))


def test_concurrent_validations_from_several_processes_into_one_shops_gx_folder(gx_folder, monkeypatch):
    """Four task processes of one shop validating the same suite at once, each pruning the others'
    older results: all succeed, the kept results are whole and the index lists the newest."""
    monkeypatch.setenv(KEEP_ENV, "3")
    validate(
        "shipbob_orders", [{"shipbob_order_id": "warm", "status": "Cancelled"}], NOW
    )  # GX imported before the fork
    fork = multiprocessing.get_context("fork")
    done = fork.Queue()
    workers = [fork.Process(target=_validate_in_child, args=(str(gx_folder), w, done)) for w in range(4)]
    for w in workers:
        w.start()
    answers = dict(done.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    assert answers == {w: "ok" for w in range(4)}
    stored = sorted((shop_dir(SHOP) / "validations" / "shipbob_orders").rglob("*.json"))
    assert len(stored) == 3 and all(json.loads(p.read_text())["success"] for p in stored)
    pages = sorted((docs_dir(SHOP) / "validations" / "shipbob_orders").rglob("*.html"))
    assert [p.parent.parent.name for p in pages] == [p.parent.parent.name for p in stored]
    index = (docs_dir(SHOP) / "index.html").read_text()
    assert index.rstrip().endswith("</html>") and all(p.parent.parent.name in index for p in stored)
