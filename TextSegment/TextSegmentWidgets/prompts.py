"""The prompt box: one prompt per line, completion from the model's vocabulary, recent prompts."""

from typing import Any, Callable, List

import qt

MAX_RECENT = 20


class PromptsPanel:
    """Prompt editing. ``ui``: the module's widgets; ``parameters()``: the parameter node (or None); ``changed()``:
    called after an edit (the widget updates its buttons)."""

    def __init__(self, ui: Any, parameters: Callable[[], Any], changed: Callable[[], None]) -> None:
        self.ui, self.parameters, self.changed = ui, parameters, changed

    def prompts(self) -> List[str]:
        return [line.strip() for line in self.ui.promptEdit.toPlainText().splitlines() if line.strip()]

    def onEdited(self) -> None:
        p = self.parameters()
        if p and p.prompts != self.ui.promptEdit.toPlainText():
            p.prompts = self.ui.promptEdit.toPlainText()
        self.changed()

    def addLine(self) -> None:
        text = self.ui.promptLineEdit.text.strip()
        if text:
            self.ui.promptEdit.appendPlainText(text)
            self.ui.promptLineEdit.clear()

    def setCompletions(self, names) -> None:
        completer = qt.QCompleter(sorted(set(names)), self.ui.promptLineEdit)
        completer.setCaseSensitivity(qt.Qt.CaseInsensitive)
        completer.setFilterMode(qt.Qt.MatchContains)
        self.ui.promptLineEdit.setCompleter(completer)

    def fillRecent(self) -> None:
        p = self.parameters()
        self.ui.recentPromptsComboBox.clear()
        self.ui.recentPromptsComboBox.addItem("Recent prompts")
        for entry in (p.recentPrompts if p else "").split("\n"):
            if entry:
                self.ui.recentPromptsComboBox.addItem(entry.replace("\t", ", "), entry)

    def useRecent(self, index: int) -> None:
        data = self.ui.recentPromptsComboBox.itemData(index)
        if data:
            self.ui.promptEdit.setPlainText(data.replace("\t", "\n"))
        self.ui.recentPromptsComboBox.setCurrentIndex(0)

    def remember(self, prompts) -> None:
        p = self.parameters()
        entry = "\t".join(prompts)
        old = [e for e in p.recentPrompts.split("\n") if e and e != entry]
        p.recentPrompts = "\n".join([entry] + old[: MAX_RECENT - 1])
        self.fillRecent()
