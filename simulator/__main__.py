"""``python -m simulator``: the ``fleetgate sim`` command on its own."""

from simulator.cli import main

if __name__ == "__main__":
    main()
