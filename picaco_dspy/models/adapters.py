"""A plain-completion DSPy adapter for single-output signatures, for small models that cannot write field markers."""

from __future__ import annotations

from typing import Any

from dspy.adapters import Adapter

from picaco_dspy.errors import ConfigurationError


class PlainTextAdapter(Adapter):
    """Formats a call as an ordinary chat and takes the whole completion as the only output field.

    The system message is the signature's instructions (so PICACO's meta-instruction becomes the system prompt
    verbatim, exactly what the reference model conditions on); the user message is the input (its bare text when
    there is one input field, ``Field name: value`` blocks otherwise). Works with any LM; meant for small local models
    such as the embedded SmolLM2, which cannot produce DSPy's ``[[ ## field ## ]]`` markers or JSON.

    Raises:
        ConfigurationError: the signature has more than one output field (e.g. ``ChainOfThought`` adds ``reasoning``).
    """

    def format(self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        self._output_name(signature)
        messages: list[dict[str, Any]] = []
        instructions = (signature.instructions or "").strip()
        if instructions:
            messages.append({"role": "system", "content": instructions})
        output = self._output_name(signature)
        for demo in demos or []:
            if output in demo and all(k in demo for k in signature.input_fields):
                messages.append({"role": "user", "content": self._user_text(signature, demo)})
                messages.append({"role": "assistant", "content": str(demo[output])})
        messages.append({"role": "user", "content": self._user_text(signature, inputs)})
        return messages

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        return {self._output_name(signature): completion.strip()}

    @staticmethod
    def _output_name(signature: Any) -> str:
        outputs = list(signature.output_fields)
        if len(outputs) != 1:
            raise ConfigurationError(
                f"PlainTextAdapter handles signatures with exactly one output field; {signature.__name__} has "
                f"{outputs}. Use dspy.Predict (not ChainOfThought) or a model that follows ChatAdapter."
            )
        return outputs[0]

    @staticmethod
    def _user_text(signature: Any, values: dict[str, Any]) -> str:
        fields = list(signature.input_fields)
        if len(fields) == 1:
            return str(values.get(fields[0], ""))
        return "\n\n".join(f"{name.replace('_', ' ').capitalize()}:\n{values.get(name, '')}" for name in fields)
