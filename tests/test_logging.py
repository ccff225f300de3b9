"""mt.logging on Python's logging: routing, verbosity, timings, no duplicated lines."""

import io
import logging
import re
from datetime import datetime, timedelta

import pytest

import maxtoki as mt


@pytest.fixture(scope="module")
def atlas_and_vocab():
    with mt.settings.override(verbosity=0):
        adata = mt.datasets.aging_atlas(
            n_donors=4, n_cells_per_donor=5, n_genes=200, n_cell_types=3, seed=0
        )
        vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    return adata, vocab


@pytest.fixture
def user_handler():
    """A handler a user attaches to the ``maxtoki`` logger, collecting records."""

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    handler = Collect()
    logging.getLogger("maxtoki").addHandler(handler)
    yield handler
    logging.getLogger("maxtoki").removeHandler(handler)


def test_caplog_captures_a_real_tool_call(atlas_and_vocab, caplog, capsys):
    adata, vocab = atlas_and_vocab
    mt.pp.tokenize(adata.copy(), vocab=vocab)
    records = [r for r in caplog.records if r.getMessage().startswith("tokenizing")]
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    # a child logger named after the module, under the package logger
    assert records[0].name == "maxtoki.pp._tokenize"
    assert records[0].funcName == "tokenize"  # the caller, not the logging helpers
    finished = [r for r in caplog.records if r.getMessage().startswith("    finished")]
    assert len(finished) == 1 and isinstance(finished[0].time_passed, timedelta)
    # the default handler printed the same lines once each to stderr
    err = capsys.readouterr().err
    assert err.count("tokenizing 20 cells") == 1


def test_verbosity_zero_silences_info_and_warnings(atlas_and_vocab, caplog, capsys):
    adata, vocab = atlas_and_vocab
    mt.settings.verbosity = 0
    assert logging.getLogger("maxtoki").level == logging.ERROR
    mt.pp.tokenize(adata.copy(), vocab=vocab)
    mt.logging.warning("not shown")
    assert [r for r in caplog.records if r.name.startswith("maxtoki")] == []
    assert capsys.readouterr().err == ""
    mt.logging.error("shown")
    assert caplog.records[-1].levelno == logging.ERROR
    assert capsys.readouterr().err == "ERROR: shown\n"


def test_verbosity_maps_onto_logger_levels_both_ways():
    logger = logging.getLogger("maxtoki")
    levels = [logging.ERROR, logging.WARNING, logging.INFO, mt.logging.HINT, logging.DEBUG]
    for verbosity, level in enumerate(levels):
        mt.settings.verbosity = verbosity
        assert logger.level == level
    for verbosity, level in enumerate(levels):
        logger.setLevel(level)
        assert mt.settings.verbosity == verbosity
    logger.setLevel(logging.CRITICAL)
    assert mt.settings.verbosity == 0
    mt.settings.verbosity = "hint"
    assert logger.level == mt.logging.HINT and logging.getLevelName(mt.logging.HINT) == "HINT"


def test_a_users_handler_receives_records(user_handler, capsys):
    mt.logging.info("to my handler")
    mt.logging.debug("below the level")
    assert [r.getMessage() for r in user_handler.records] == ["to my handler"]
    mt.settings.verbosity = "debug"
    mt.logging.debug("now shown")
    assert user_handler.records[-1].getMessage() == "now shown"
    assert user_handler.records[-1].levelno == logging.DEBUG
    assert capsys.readouterr().err == "to my handler\nDEBUG: now shown\n"


def test_timings_are_appended():
    start = datetime.now() - timedelta(minutes=1, seconds=30)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("maxtoki").addHandler(handler)
    try:
        returned = mt.logging.info("done", time=start)
        mt.logging.info("quick", time=datetime.now())
    finally:
        logging.getLogger("maxtoki").removeHandler(handler)
    assert isinstance(returned, datetime) and returned - start >= timedelta(seconds=90)
    assert records[0].getMessage() == "done (0:01:30)"
    assert records[0].time_passed >= timedelta(seconds=90)
    assert re.fullmatch(r"quick \(\d+\.\d\ds\)", records[1].getMessage())
    assert records[1].time_passed < timedelta(seconds=60)


def test_prefixes_and_deep_detail(capsys):
    mt.logging.warning("careful")
    mt.logging.hint("hidden at info verbosity")
    mt.logging.info("headline", deep="detail")
    assert capsys.readouterr().err == "WARNING: careful\nheadline\n"
    mt.settings.verbosity = 3
    mt.logging.hint("a hint")
    mt.logging.info("headline", deep="detail")
    assert capsys.readouterr().err == "--> a hint\nheadline\n    detail\n"


def test_no_duplicate_lines_when_the_root_logger_prints(capsys):
    """After logging.basicConfig-like set-up, the root handler prints and ours stands aside."""
    stream = io.StringIO()
    root_handler = logging.StreamHandler(stream)
    root_handler.setFormatter(logging.Formatter("%(name)s|%(levelname)s|%(message)s"))
    root = logging.getLogger()
    root.addHandler(root_handler)
    try:
        mt.logging.info("routed")
    finally:
        root.removeHandler(root_handler)
    assert stream.getvalue() == "maxtoki|INFO|routed\n"
    assert capsys.readouterr().err == ""
    mt.logging.info("back to stderr")  # the root handler is gone: ours prints again
    assert capsys.readouterr().err == "back to stderr\n"


def test_without_propagation_the_default_handler_prints(capsys):
    stream = io.StringIO()
    root_handler = logging.StreamHandler(stream)
    logger = logging.getLogger("maxtoki")
    logging.getLogger().addHandler(root_handler)
    logger.propagate = False
    try:
        mt.logging.info("kept to maxtoki")
    finally:
        logger.propagate = True
        logging.getLogger().removeHandler(root_handler)
    assert stream.getvalue() == ""
    assert capsys.readouterr().err == "kept to maxtoki\n"


def test_only_the_package_logger_has_a_handler():
    assert mt.logging.handler in logging.getLogger("maxtoki").handlers
    assert mt.logging.handler not in logging.getLogger().handlers
    assert logging.getLogger("maxtoki").propagate
