"""Process entry point (`python -m nodecfg` and the `nodecfg` console script)."""

import sys


def main() -> None:
    """Run the command line and exit with its code."""
    # structlog imports `rich` for pretty development tracebacks when it is installed; nodecfg
    # never renders them, and the import costs ~14 MiB and ~0.1 s in every process.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    from nodecfg.cli import main as cli_main  # noqa: PLC0415 (after the line above, on purpose)

    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
