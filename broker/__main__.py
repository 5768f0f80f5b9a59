"""``python -m broker``: the ``fleetgate broker`` command on its own."""

from broker.cli import main

if __name__ == "__main__":
    main()
