"""The Textual front end. Imported only by the commands that open it."""


def run_app(store, **kwargs) -> None:
    from .app import InflabApp

    InflabApp(store, **kwargs).run()
