"""``python -m gateway``: the ``fleetgate gateway`` command on its own."""

from gateway.cli import main

if __name__ == "__main__":
    main()
