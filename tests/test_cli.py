"""The command line: every subcommand's help renders (argparse %-formats help strings)."""
import contextlib
import io

import pytest

from mmedit_lib.cli import build_parser

SUBCOMMANDS = ("world", "train-backbone", "report-backbone", "validate", "run", "notebooks", "book")


@pytest.mark.parametrize("argv", [[]] + [[name] for name in SUBCOMMANDS])
def test_help_renders_for_the_program_and_every_subcommand(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    assert out.getvalue().startswith("usage: ")
