"""The payload scripts' command-line parser: a bad argument is one line naming the flag and
exit code 2, with no usage block. Standard library only."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")
