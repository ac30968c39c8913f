"""Which adapter and which prompt a call runs with: the loaded task, a per-call `task`
(an adapter name or a Jina API task name from tasks.API_TASKS, which picks the prompt
too), `prompt_name` and a literal `prompt`.

`TaskChoice` is a mixin for the Embedder; it reads `_task`, `_tasks`, `multitask`,
`_prompts` and `default_prompt_name`.
"""

import warnings

from ..tasks import TASK_NAMES, parse_task, task_prompts
from .engine import InputTypeError


class TaskChoice:
    _task: str | None
    _tasks: tuple[str, ...]
    multitask: bool
    _prompts: dict[str, str]
    default_prompt_name: str

    @property
    def prompts(self) -> dict[str, str]:
        """Prompt name -> text added before each input, for this model's task."""
        return self.prompts_for(self._task)

    def prompts_for(self, task: str | None) -> dict[str, str]:
        """Prompt name -> text for `task`: only retrieval has a distinct query prompt."""
        return task_prompts(self._prompts, task)

    def resolve_task(self, task: str | None) -> str | None:
        """The adapter a call runs with: `task` (an adapter or a Jina API task
        name), or the loaded one when None."""
        task = self.parse_task(task)[0]
        if task is None:
            if self.multitask and self._task is None:
                raise ValueError(
                    f"This model holds the adapters {', '.join(self._tasks)}; pass task= to "
                    'pick one per call (CLI --task, server "task").'
                )
            return self._task
        if self.multitask and task not in self._tasks:
            raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(self._tasks)}.")
        if not self.multitask and task != self._task:
            raise ValueError(
                f"This model was loaded for task {self._task!r}, not {task!r}. Load it for "
                f"{task!r}, or with multitask=True (CLI/server --multitask) to pick the task "
                "per call."
            )
        return task

    @staticmethod
    def parse_task(task: str | None) -> tuple[str | None, str | None]:
        """(adapter, prompt name or None) for an adapter or Jina API task name."""
        if task is None:
            return None, None
        if not isinstance(task, str):
            raise InputTypeError(f"task={task!r}; use a task name (a string) or None.")
        try:
            return parse_task(task)
        except ValueError:
            names = ", ".join(TASK_NAMES)
            raise ValueError(f"Unknown task {task!r}. Available tasks: {names}.") from None

    def resolve_task_prompt(
        self, task: str | None, prompt_name: str | None, prompt: str | None
    ) -> tuple[str | None, str | None]:
        """(adapter, prompt name) for a call. A Jina API task name (a query or passage
        one) picks the prompt too; an explicit prompt or prompt name that disagrees is an error."""
        adapter, picked = self.parse_task(task)
        if picked is not None:
            if prompt is not None:
                raise ValueError(
                    f"The task {task!r} picks the {picked!r} prompt, and a literal prompt "
                    f"{prompt!r} was given too. Drop the prompt, or name the adapter "
                    f"({adapter!r}) with the prompt."
                )
            if prompt_name not in (None, picked):
                raise ValueError(
                    f"The task {task!r} picks the {picked!r} prompt, not {prompt_name!r}. "
                    f"Drop one of them, or name the adapter ({adapter!r}) with the prompt name."
                )
            prompt_name = picked
        return self.resolve_task(adapter), prompt_name

    def resolve_prompt(
        self, prompt_name: str | None, prompt: str | None, task: str | None = None
    ) -> str:
        if prompt is not None:
            if prompt_name is not None:
                warnings.warn("Both prompt and prompt_name were given; using prompt.", stacklevel=3)
            if not isinstance(prompt, str):
                raise InputTypeError(f"prompt must be a string, got {type(prompt).__name__}.")
            return prompt
        name = self.default_prompt_name if prompt_name is None else prompt_name
        prompts = self.prompts_for(task or self._task)
        if name not in prompts:
            raise ValueError(
                f"Unknown prompt_name {name!r}. Valid names: {', '.join(sorted(prompts))}."
            )
        return prompts[name]
