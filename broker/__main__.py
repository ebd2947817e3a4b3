"""``python -m broker`` runs the same CLI as the ``broker`` console script."""

from broker.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
