"""The Textual front end. Imported only by the commands that open it."""


def run_app(store, **kwargs) -> None:
    from .app import InflabApp

    InflabApp(store, **kwargs).run()


def run_instructor(source, *, refresh_s: float = 10.0) -> None:
    """The instructor dashboard on ``source`` (an :class:`inflab.instructor.records.RoomSource`)."""
    from .instructor import InstructorApp

    InstructorApp(source, refresh_s=refresh_s).run()
