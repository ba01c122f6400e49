"""Entry point of the bundled application (PyInstaller): the ``splatstudio`` command.

``multiprocessing.freeze_support()`` first: the pipeline runs each stage in a ``spawn``
process, which in a bundle is this executable started again with multiprocessing's arguments.
"""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from splatstudio.cli import main

    raise SystemExit(main())
