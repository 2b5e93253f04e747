"""The Textual front end. Imported only by the commands that open it."""


def run_app(store, engines, **kwargs) -> str | None:
    """Run the lab on the sessions of ``store`` (``engines`` opens one: the engine's class, given by the
    command); returns the session it showed last (None if it opened none)."""
    from .app import InflabApp

    app = InflabApp(store, engines=engines, **kwargs)
    app.run()
    return app.last_session


def run_instructor(source, *, refresh_s: float = 10.0) -> None:
    """The instructor dashboard on ``source`` (an :class:`inflab.instructor.records.RoomSource`)."""
    from .instructor import InstructorApp

    InstructorApp(source, refresh_s=refresh_s).run()
