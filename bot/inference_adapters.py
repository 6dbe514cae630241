"""Promotion and rollback that an inference server follows: with ``SUPPORTBOT_LLM_BACKEND=openai``
the live tone adapters are loaded into vLLM at run time (``POST /v1/load_lora_adapter``; the server
needs ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) and the replaced one unloaded.

Order, so that a failure never leaves chats asking the server for a model it lacks:

- promote: the server loads the adapter → the registry records the promotion → the adapter that no
  scope uses any more is unloaded. A load failure stops before the registry changes.
- rollback: the server loads the adapter that becomes live (``AdapterRegistry.rollback_target``) →
  the registry records the rollback → the rolled-back adapter is unloaded.

An unload failure is only a warning: the registry change is done and an extra loaded adapter is
harmless. With the local backend the bot loads adapters itself, so these are the registry's own steps.

Before ``train --promote``, a training job or ``supportbot adapters promote`` makes an adapter live,
:func:`answer_gate` answers the knowledge base's own questions with the live model and with the candidate: a
candidate that holds the gold answer less often (by more than 0.02), or that writes a link, e-mail, phone,
price, order number, handle, placeholder or name the passages do not hold (cut by the serving guard, or left in
an answer), fails, whatever its perplexity. The gate runs once the inference server has loaded the candidate (it
answers through the server) and before the registry changes; a failure unloads it again.
``adapters promote --skip-answer-gate`` promotes without it, with a warning.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from finetune.registry import DEFAULT_SCOPE, Adapter, AdapterRegistry, RegistryError, check_adapter_files
from supportbot.settings import Settings

log = logging.getLogger(__name__)

# Replicas re-read the registry every 2 s (LiveAdapters.poll_seconds); the replaced adapter is unloaded
# only after they have switched, else their next answers would ask for a model that is gone.
UNLOAD_GRACE_SECONDS = 5.0


class HandoffError(RuntimeError):
    """The inference server did not follow a promotion or rollback; the message is one line that says what to do."""


class GateError(RuntimeError):
    """The candidate failed the answer gate, or the gate could not run; one line, and nothing was promoted."""


@dataclass
class Handoff:
    """What a promotion or rollback did: the adapter now live, and what the inference server loaded and unloaded."""

    live: Adapter | None
    loaded: list[str] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_servable(adapter: Adapter) -> None:
    """Refuse what vLLM cannot hot-load: only PEFT LoRA adapters can be (QLoRA saves LoRA too)."""
    config_file = Path(adapter.path) / "adapter_config.json"
    if not config_file.exists():
        raise HandoffError(
            f"{adapter.version} is a full fine-tune (no adapter_config.json): an inference server cannot load it at "
            f"run time; serve its folder {adapter.path} as the server's model and set SUPPORTBOT_LLM_MODEL, "
            "or promote a LoRA adapter"
        )
    try:
        peft_type = json.loads(config_file.read_text()).get("peft_type")
    except (OSError, ValueError) as exc:
        raise HandoffError(f"{config_file}: unreadable adapter config ({exc})") from None
    if peft_type != "LORA":
        raise HandoffError(
            f"{adapter.version} is a {peft_type} adapter: vLLM serves LoRA adapters only; "
            "train with --method lora or qlora, or use SUPPORTBOT_LLM_BACKEND=local"
        )


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _server_message(response: httpx.Response) -> str | None:
    """vLLM's error message ({"message"} or {"error": {"message"}}), or None for a plain 404 (no such route)."""
    try:
        body: Any = response.json()
    except ValueError:
        return _one_line(response.text) or None
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(error.get("message"), str):
            return _one_line(error["message"])
    return None


class LoraServer:
    """vLLM's runtime LoRA API under the OpenAI base URL: ``models``, ``load_lora_adapter``, ``unload_lora_adapter``."""

    def __init__(self, base_url: str, api_key: str = "", adapter_root: str = "", timeout: float = 300.0) -> None:
        if not base_url:
            raise HandoffError("SUPPORTBOT_LLM_URL must be set when SUPPORTBOT_LLM_BACKEND=openai")
        self.base_url = base_url.rstrip("/")
        self.adapter_root = adapter_root
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Loading reads the adapter from disk and may compile kernels: allow minutes, not seconds.
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def server_path(self, adapter: Adapter) -> str:
        """The adapter's folder as the server sees it: SUPPORTBOT_LLM_ADAPTER_ROOT/VERSION, or the registry's path."""
        if not self.adapter_root:
            return adapter.path
        return f"{self.adapter_root.rstrip('/')}/{Path(adapter.path).name}"

    def _post(self, route: str, body: dict[str, str]) -> httpx.Response:
        try:
            return self._client.post(f"/{route}", json=body)
        except httpx.HTTPError as exc:
            raise HandoffError(f"cannot reach the inference server at {self.base_url} ({exc})") from None

    def loaded(self) -> set[str]:
        """Every model name the server answers to (its base model and the adapters it has loaded)."""
        try:
            response = self._client.get("/models")
        except httpx.HTTPError as exc:
            raise HandoffError(f"cannot reach the inference server at {self.base_url} ({exc})") from None
        if response.status_code != 200:
            raise HandoffError(f"{self.base_url}/models answered {response.status_code}: "
                               f"{_server_message(response) or response.reason_phrase}; check SUPPORTBOT_LLM_API_KEY")
        return {model["id"] for model in response.json().get("data", [])}

    def load(self, adapter: Adapter) -> None:
        path = self.server_path(adapter)
        response = self._post("load_lora_adapter", {"lora_name": adapter.version, "lora_path": path})
        if response.status_code == 200:
            return
        message = _server_message(response)
        if message and "already been loaded" in message:
            return  # another process loaded it first: what we wanted
        if response.status_code == 404 and message is None:
            raise HandoffError(
                f"{self.base_url}/load_lora_adapter does not exist: start vLLM with --enable-lora and "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
            )
        hint = ("; SUPPORTBOT_LLM_ADAPTER_ROOT must be HOME/adapters as the server sees it"
                if response.status_code == 404 else "")
        raise HandoffError(f"the inference server could not load {adapter.version} from {path} "
                           f"({response.status_code}: {message or response.reason_phrase}){hint}")

    def unload(self, version: str) -> None:
        response = self._post("unload_lora_adapter", {"lora_name": version})
        if response.status_code == 404 and _server_message(response) is not None:
            return  # not loaded (a restart, or unloaded by another process): nothing to do
        if response.status_code != 200:
            raise HandoffError(f"the inference server could not unload {version} "
                               f"({response.status_code}: {_server_message(response) or response.reason_phrase})")


class AdapterDeployer:
    """Promote and roll back adapters so that the configured chat backend serves what the registry says is live."""

    def __init__(self, registry: AdapterRegistry, settings: Settings, *, grace_seconds: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.registry = registry
        self.settings = settings
        self.grace_seconds = UNLOAD_GRACE_SECONDS if grace_seconds is None else grace_seconds
        self.sleep = sleep

    @property
    def uses_server(self) -> bool:
        return self.settings.llm_backend == "openai"

    def _server(self) -> LoraServer:
        s = self.settings
        return LoraServer(s.llm_url, s.llm_api_key, s.llm_adapter_root)

    def _open_for(self, adapter: Adapter | None, unchanged: str) -> LoraServer:
        """The server, once *adapter* (None: the base model) is known to be servable; else one error
        that ends with what stayed unchanged."""
        try:
            if adapter is not None:
                check_servable(adapter)
            return self._server()
        except HandoffError as exc:
            raise HandoffError(f"{exc}; {unchanged}") from None

    def promote(self, version: str, scope: str = DEFAULT_SCOPE,
                gate: Callable[[Adapter], None] | None = None) -> Handoff:
        """Make *version* live in *scope*; with a server, only once the server has loaded it. *gate* (e.g.
        :func:`answer_gate_check`) runs before the registry changes, once the adapter can answer (loaded by the
        server); when it raises, nothing is promoted and what was loaded for it is unloaded."""
        adapter = self.registry.get(version)
        if not self.uses_server:
            if gate is not None:
                check_adapter_files(Path(adapter.path))  # a corrupt folder fails in one line, not in the gate
                gate(adapter)
            return Handoff(self.registry.promote(version, scope))
        replaced = self.registry.live().get(scope)
        server = self._open_for(adapter, f"{version} was not promoted")
        try:
            try:
                handoff = Handoff(adapter, loaded=self._ensure_loaded(server, adapter))
            except HandoffError as exc:
                raise HandoffError(f"{exc}; {version} was not promoted") from None
            try:
                if gate is not None:
                    gate(adapter)
                self.registry.promote(version, scope)
            except Exception:
                for name in handoff.loaded:  # not live after all: leave the server as it was
                    self._try_unload(server, name, Handoff(None))
                raise
            self._unload_unused(server, replaced, handoff)
            return handoff
        finally:
            server.close()

    def rollback(self, scope: str = DEFAULT_SCOPE) -> Handoff:
        """Undo the latest promotion of *scope*; with a server, the adapter that becomes live is loaded first."""
        if not self.uses_server:
            return Handoff(self.registry.rollback(scope))
        target = self.registry.rollback_target(scope)  # RegistryError when there is nothing to roll back
        replaced = self.registry.live().get(scope)
        server = self._open_for(target, "nothing was rolled back")
        try:
            try:
                loaded = self._ensure_loaded(server, target) if target else []
            except HandoffError as exc:
                raise HandoffError(f"{exc}; nothing was rolled back") from None
            previous = self.registry.rollback(scope)
            handoff = Handoff(previous, loaded=loaded)
            if previous is not None and (target is None or previous.id != target.id):
                # Someone promoted in between: the registry is rolled back, so the server must follow.
                try:
                    handoff.loaded += self._ensure_loaded(server, previous)
                except HandoffError as exc:
                    raise HandoffError(f"rolled back to {previous.version}, but {exc}; "
                                       "run `supportbot adapters sync` once the server is fixed") from None
            self._unload_unused(server, replaced, handoff)
            return handoff
        finally:
            server.close()

    def sync(self) -> Handoff:
        """Load every live adapter the server lacks (after it restarted) and unload registered ones no scope uses."""
        if not self.uses_server:
            raise HandoffError("nothing to sync: SUPPORTBOT_LLM_BACKEND is local (the bot loads adapters itself)")
        server = self._server()
        try:
            live = {a.version: a for a in self.registry.live().values() if a is not None}
            handoff = Handoff(self.registry.live().get(DEFAULT_SCOPE))
            for adapter in live.values():
                check_servable(adapter)
                handoff.loaded += self._ensure_loaded(server, adapter)
            registered = {row["version"] for row in self.registry.list()}
            for name in sorted((server.loaded() & registered) - set(live)):
                self._try_unload(server, name, handoff)
            return handoff
        finally:
            server.close()

    @staticmethod
    def _ensure_loaded(server: LoraServer, adapter: Adapter) -> list[str]:
        if adapter.version in server.loaded():
            return []
        server.load(adapter)
        return [adapter.version]

    def _unload_unused(self, server: LoraServer, replaced: Adapter | None, handoff: Handoff) -> None:
        if replaced is None:
            return
        still_live = {a.version for a in self.registry.live().values() if a is not None}
        if replaced.version in still_live:
            return  # live in another scope, or promoted again
        if self.grace_seconds > 0:
            log.warning("unloading %s in %.0f s, once every replica has switched", replaced.version,
                        self.grace_seconds)
            self.sleep(self.grace_seconds)
        self._try_unload(server, replaced.version, handoff)

    @staticmethod
    def _try_unload(server: LoraServer, version: str, handoff: Handoff) -> None:
        try:
            server.unload(version)
            handoff.unloaded.append(version)
        except HandoffError as exc:
            handoff.warnings.append(f"{exc} (harmless: it is no longer live)")


# The project's regression questions about the packaged sample knowledge base (bot/sample_kb).
GATE_QUESTIONS = Path(__file__).resolve().parent / "evals" / "data" / "sample_kb_questions.csv"


def _guard_cuts() -> float:
    from bot.metrics import GUARD_CUTS

    return sum(s.value for m in GUARD_CUTS.collect() for s in m.samples if s.name.endswith("_total"))


def answer_scores(registry: AdapterRegistry, settings: Settings, adapter: Adapter | None,
                  questions: Path | None = None, collection: str | None = None) -> dict[str, Any]:
    """Answer *questions* (default :data:`GATE_QUESTIONS`) with *adapter* (None: the base model) through the
    full chain: gold coverage, what the serving guard had to cut, and answers that still hold something the
    passages do not."""
    from bot.adapters import chat_model_for
    from bot.evals.answers import score_answers
    from bot.evals.retrieval import load_questions
    from bot.evals.strategies import Strategy, StrategyAnswerer, strategy_name
    from finetune.targets import leaks
    from ingestion.embed import get_embedder
    from ingestion.search import Searcher

    qs = load_questions(questions or GATE_QUESTIONS)
    embedder = get_embedder(settings)
    strategy = Strategy(strategy_name(adapter.method if adapter else None, True), True, adapter)
    answerer = StrategyAnswerer(strategy, Searcher.from_settings(registry.db, embedder, settings),
                                chat_model_for(settings, adapter), settings, collection)
    cuts = _guard_cuts()
    records = {q.id: answerer(q) for q in qs}
    cuts = _guard_cuts() - cuts
    leaky = {q.id: leaks(records[q.id].text, "\n".join([*records[q.id].passages, q.question])) for q in qs}
    report = score_answers(qs, records, None)
    return {"questions": len(qs), "gold_held": report.gold_held, "false_handoff_rate": report.false_handoff_rate,
            "guard_cuts": int(cuts), "leaky_answers": sum(bool(v) for v in leaky.values()),
            "leaks": [f"{kind}: {text}" for found in leaky.values() for kind, text in found][:10],
            "closing": next((r.text.rsplit("\n\n", 1)[-1] for r in records.values() if not r.handed_off), "")}


def answer_gate(registry: AdapterRegistry, settings: Settings, candidate: Adapter, *, questions: Path | None = None,
                tolerance: float = 0.02, scope: str = DEFAULT_SCOPE) -> tuple[bool, str, dict[str, Any]]:
    """Whether *candidate* answers the knowledge base's questions as well as the model live in *scope* (else in
    ``*``, else the base model), and writes nothing the serving guard must cut: (passed, reason, scores of both)."""
    live_now = registry.live()
    live = live_now.get(scope) or live_now.get(DEFAULT_SCOPE)
    reference = live if live and live.version != candidate.version else None
    scores = {"reference": answer_scores(registry, settings, reference, questions)}
    scores["reference"]["model"] = reference.version if reference else "base"
    ref = scores["reference"]
    if not ref["gold_held"]:
        # 0 against 0 would pass any adapter: the questions are not about what is ingested
        return False, (f"answers: {ref['model']} holds no gold answer to the {ref['questions']} gate questions: "
                       "ingest the knowledge base they are about, or name its own with --gate-questions"), scores
    scores["candidate"] = cand = answer_scores(registry, settings, candidate, questions)
    if ref["gold_held"] - (cand["gold_held"] or 0) > tolerance:
        return False, (f"answers: gold coverage {cand['gold_held']:.2f} < {ref['gold_held']:.2f} of "
                       f"{scores['reference']['model']} − {tolerance}"), scores
    if cand["leaky_answers"] or cand["guard_cuts"] > ref["guard_cuts"]:
        return False, (f"answers: the adapter wrote links, contacts, names, placeholders or credential requests "
                       f"({cand['guard_cuts']} cut by the guard, {cand['leaky_answers']} answers) : "
                       f"{cand['leaks'][:3]}"), scores
    gold = cand["gold_held"] or 0.0
    return True, f"answers: gold coverage {gold:.2f} (reference {ref['gold_held']:.2f}), nothing cut", scores


def answer_gate_check(registry: AdapterRegistry, settings: Settings, *, questions: Path | None = None,
                      scope: str = DEFAULT_SCOPE,
                      passed: Callable[[str], None] | None = None) -> Callable[[Adapter], None]:
    """The answer gate as :meth:`AdapterDeployer.promote`'s *gate*: raises :class:`GateError` (one line) when the
    candidate fails it or it cannot run; *passed* receives the gate's reason otherwise."""

    def check(candidate: Adapter) -> None:
        try:
            ok, reason, _ = answer_gate(registry, settings, candidate, questions=questions, scope=scope)
        except Exception as exc:  # e.g. an adapter the model cannot load: any of several types
            raise GateError(f"the answer gate could not run for {candidate.version} ({type(exc).__name__}: "
                            f"{_one_line(str(exc), 200)}); {candidate.version} was not promoted") from None
        if not ok:
            raise GateError(f"{candidate.version} failed the answer gate ({_one_line(reason, 240)}); it was not "
                            "promoted (--skip-answer-gate promotes it anyway)")
        if passed is not None:
            passed(reason)

    return check


def promote_by_hand(registry: AdapterRegistry, settings: Settings, version: str, scope: str = DEFAULT_SCOPE, *,
                    force: bool = False, skip_answer_gate: bool = False, questions: Path | None = None,
                    passed: Callable[[str], None] | None = None) -> Handoff:
    """``supportbot adapters promote``: the training's perplexity gate must have passed (or *force*), and the
    answer gate runs (:func:`answer_gate_check`) unless *skip_answer_gate*, which is logged as a warning."""
    adapter = registry.get(version)
    if not adapter.metrics.get("gate_passed") and not force:
        raise RegistryError(f"{version} failed the evaluation gate ({adapter.metrics.get('gate')}); "
                            "use --force to promote it anyway")
    gate = None
    if questions is not None and not skip_answer_gate:
        from bot.evals.retrieval import load_questions

        try:  # a missing or malformed file fails before anything is loaded
            load_questions(questions)
        except (OSError, ValueError) as exc:
            message = f"{questions}: no such file" if not questions.is_file() else _one_line(str(exc), 240)
            raise GateError(f"--gate-questions {message}; {version} was not promoted") from None
    if skip_answer_gate:
        log.warning("promoting %s without the answer gate (--skip-answer-gate): its answers to the knowledge "
                    "base's questions were not checked", version)
    else:
        gate = answer_gate_check(registry, settings, questions=questions, scope=scope, passed=passed)
    return AdapterDeployer(registry, settings).promote(version, scope, gate=gate)


def promote_after_training(registry: AdapterRegistry, settings: Settings, report: Any, force: bool,
                           questions: Path | None = None) -> None:
    """``train --promote``: promote the registered adapter if it passed the perplexity gate and then the answer
    gate (:func:`answer_gate`, on *questions*), or with *force*, through the server. As by hand, the answer gate
    runs once an inference server has loaded the candidate (it answers through the server), and a failure
    unloads it again.

    *report* is the run's ``TrainReport``; its ``promoted`` flag, gate result and report.json are updated.
    """
    if not report.version or not (report.gate_passed or force):
        return

    def gate(candidate: Adapter) -> None:
        passed, reason, scores = answer_gate(registry, settings, candidate, questions=questions)
        report.scores["answers"] = scores
        report.gate_passed, report.gate_reason = passed, f"{report.gate_reason}; {reason}"
        _save_report(report)
        if not passed:
            raise GateError(reason)

    try:
        AdapterDeployer(registry, settings).promote(report.version, gate=None if force else gate)
    except GateError:
        return  # the report says why; nothing was promoted
    report.promoted = True
    _save_report(report)


def _save_report(report: Any) -> None:
    report_file = Path(report.run_dir) / "report.json"
    if report_file.exists():
        report_file.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")

