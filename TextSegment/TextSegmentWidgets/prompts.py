"""The prompt box: one prompt per line, completion from the model's vocabulary, recent prompts."""

import qt

MAX_RECENT = 20


class PromptsMixin:
    """Prompt editing for TextSegmentWidget (uses ``self.ui`` and ``self._parameterNode``)."""

    def _prompts(self):
        return [line.strip() for line in self.ui.promptEdit.toPlainText().splitlines() if line.strip()]

    def _onPromptsEdited(self) -> None:
        if self._parameterNode and self._parameterNode.prompts != self.ui.promptEdit.toPlainText():
            self._parameterNode.prompts = self.ui.promptEdit.toPlainText()
        self._updateButtons()

    def _addPromptLine(self) -> None:
        text = self.ui.promptLineEdit.text.strip()
        if text:
            self.ui.promptEdit.appendPlainText(text)
            self.ui.promptLineEdit.clear()

    def _setCompletions(self, names) -> None:
        completer = qt.QCompleter(sorted(set(names)), self.ui.promptLineEdit)
        completer.setCaseSensitivity(qt.Qt.CaseInsensitive)
        completer.setFilterMode(qt.Qt.MatchContains)
        self.ui.promptLineEdit.setCompleter(completer)

    def _fillRecent(self) -> None:
        self.ui.recentPromptsComboBox.clear()
        self.ui.recentPromptsComboBox.addItem("Recent prompts")
        for entry in (self._parameterNode.recentPrompts if self._parameterNode else "").split("\n"):
            if entry:
                self.ui.recentPromptsComboBox.addItem(entry.replace("\t", ", "), entry)

    def _useRecent(self, index: int) -> None:
        data = self.ui.recentPromptsComboBox.itemData(index)
        if data:
            self.ui.promptEdit.setPlainText(data.replace("\t", "\n"))
        self.ui.recentPromptsComboBox.setCurrentIndex(0)

    def _remember(self, prompts) -> None:
        entry = "\t".join(prompts)
        old = [e for e in self._parameterNode.recentPrompts.split("\n") if e and e != entry]
        self._parameterNode.recentPrompts = "\n".join([entry] + old[: MAX_RECENT - 1])
        self._fillRecent()
