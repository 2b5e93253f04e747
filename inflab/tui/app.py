"""The inflab Textual application."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider

from ..config import ConfigError
from ..session import Store
from .screens import ConfigReview, SessionPicker
from .wizard import Wizard


class LabCommands(Provider):
    """Command palette entries for the wizard: run, skip or undo any step; clean up."""

    def _commands(self):
        screen = self.screen
        if not isinstance(screen, Wizard):
            return []
        out = [
            (
                "Run all remaining steps",
                screen.action_run_all,
                "Every step not done yet; asks whether to terminate at the end",
            ),
            (
                "Run the whole session again",
                screen.action_run_again,
                "For a finished session: each step checks, then runs",
            ),
            ("Clean up the whole session", screen.action_cleanup, "Terminates the instance and deletes everything"),
            ("Cancel the running work", screen.action_cancel, "Stops at the next safe point"),
        ]
        for step in screen.engine.steps:
            out.append((f"Run step: {step.id}", partial(self._run, screen, step.id), step.title))
            out.append((f"Undo step: {step.id}", partial(self._undo, screen, step.id), f"Undo '{step.title}'"))
        return out

    @staticmethod
    def _run(screen: Wizard, step_id: str) -> None:
        screen.query_one("#steps").highlighted = screen.query_one("#steps").get_option_index(step_id)
        screen.run_highlighted()

    @staticmethod
    def _undo(screen: Wizard, step_id: str) -> None:
        screen.query_one("#steps").highlighted = screen.query_one("#steps").get_option_index(step_id)
        screen.action_undo()

    async def discover(self) -> Hits:
        for text, cb, help_ in self._commands()[:3]:
            yield DiscoveryHit(text, cb, help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, cb, help_ in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), cb, help=help_)


class InflabApp(App):
    """Picker → config review → wizard. ``mode`` picks the first screen."""

    CSS_PATH = "app.tcss"
    TITLE = "inflab"
    COMMANDS = App.COMMANDS | {LabCommands}
    BINDINGS = [("q", "quit_lab", "Quit"), ("f1", "help", "Keys")]
    NOTIFICATION_TIMEOUT = 4

    def __init__(
        self,
        store: Store,
        *,
        engines: Callable[..., Any],
        mode: str = "picker",
        name: str | None = None,
        config=None,
        sandbox: bool = False,
    ):
        """``engines``: what opens a session's engine — ``engines(store, name, listener=...)`` — given by
        the command that starts the app (the TUI is a view on the engine; it does not make one itself)."""
        super().__init__()
        self.store = store
        self.engines = engines
        self.mode = mode
        self.start_name = name
        self.start_config = config
        self.start_sandbox = sandbox
        self.last_session: str | None = None  # the session the lab showed last (what to say on leaving)

    def on_mount(self) -> None:
        if self.mode == "new":
            self.push_screen(ConfigReview(self.start_name, self.start_config, self.start_sandbox))
        elif self.mode == "resume":
            self.open_session(self.start_name)
        else:
            self.push_screen(SessionPicker())

    def open_session(self, name: str) -> None:
        try:
            wizard = Wizard(self.store, name, self.engines)
        except ConfigError as e:  # a saved configuration this version refuses
            self.notify(f"Cannot open {name}: {e}", severity="error", markup=False, timeout=10)
            if not isinstance(self.screen, SessionPicker):
                self.push_screen(SessionPicker())
            return
        self.last_session = name
        if isinstance(self.screen, (ConfigReview, SessionPicker)) and len(self.screen_stack) > 1:
            self.switch_screen(wizard)
        else:
            self.push_screen(wizard)

    def show_picker(self) -> None:
        self.switch_screen(SessionPicker())

    def action_help(self) -> None:
        """F1 shows the keys; F1 again hides them."""
        from .widgets import toggle_help

        toggle_help(self)

    def action_quit_lab(self) -> None:
        screen = self.screen
        if isinstance(screen, Wizard) and screen.busy:
            from .widgets import ConfirmModal

            def answered(yes: bool | None) -> None:
                if yes:
                    screen.engine.detach()
                    self.exit()

            self.push_screen(
                ConfirmModal(
                    f"Quit while '{screen.busy}' runs? It stops at the next safe point; a job on the "
                    "instance, or the sweep's jobs on AWS Batch, keep running and are picked up "
                    "when you resume.",
                    "Quit",
                ),
                answered,
            )
            return
        self.exit()
