"""The few root causes behind a run's findings, most fundamental first.

Each check belongs to one root cause of the catalogue (a server that errs, answers outside the
spec, tokens not checked, nothing kept, writes not applied, …). A cause that makes an answer
wrong as a whole (a 5xx, an answer the spec does not document, a request served without a
valid token) also explains every other finding made on the same answers: a finding all of
whose answers broke such a cause is listed under it. What no catalogued cause explains is
listed under its rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vpp_sandbox.contract_tests.digest import Finding
from vpp_sandbox.contract_tests.findings import RULE_TITLES

__all__ = ["CAUSES", "Diagnosis", "RootCause", "diagnose"]


@dataclass(frozen=True, slots=True)
class RootCause:
    key: str
    title: str
    why: str
    checks: frozenset[str]
    explains_its_answers: bool = False  # the answer is wrong as a whole: other findings follow


def _cause(key: str, title: str, why: str, *checks: str, whole: bool = False) -> RootCause:
    return RootCause(key, title, why, frozenset(checks), whole)


CAUSES: tuple[RootCause, ...] = (
    _cause("suite", "The suite could not run", "a suite stopped before its end (a dead server, "
           "an answer it could not read); what it would have checked was not checked",
           "engine_error", *(f"{s}_aborted" for s in (
               "conformance", "stateful", "lifecycle", "transitions", "semantics",
               "cross-request", "security", "isolation", "pagination"))),
    _cause("errs", "The server fails", "requests get 5xx answers; what else is wrong with those "
           "answers follows from it", "server_never_errs", "not_a_server_error", whole=True),
    _cause("schema", "Answers are not what the spec documents", "statuses, media types, "
           "headers or bodies the spec does not document for the operation; what else is wrong "
           "with those answers follows from it", "response_matches_schema",
           "status_code_conformance", "content_type_conformance",
           "response_headers_conformance", "response_schema_conformance", whole=True),
    _cause("tokens", "Tokens are not checked", "requests without a valid bearer token are "
           "served (or refused with the wrong code); what else is wrong with those answers "
           "follows from it", "unauthenticated_request_rejected",
           "unauthenticated_code_names_the_problem", "expired_token_rejected",
           "unauthenticated_change_had_no_effect", "ignored_auth", whole=True),
    _cause("kept", "Nothing written is kept", "a participation just created or updated is not "
           "what the next read returns (not found, or another object)", "write_is_retrievable",
           "own_participation_found", "reads_return_last_write", "list_contains_participation",
           "use_after_free", "ensure_resource_availability"),
    _cause("applied", "Writes are not applied as sent", "creates and updates are answered, but "
           "the participation does not become what the request said (state, records, times, "
           "forecast)", "legal_move_accepted", "walk_took_legal_moves",
           "update_appends_sent_records", "pending_tail_is_expected",
           "resubmission_changes_nothing", "default_time_is_request_time",
           "created_as_requested"),
    _cause("refused", "Valid requests are refused", "requests the contract allows get an "
           "error", "well_formed_create_accepted", "terminal_frees_the_device",
           "list_request_accepted", "positive_data_acceptance"),
    _cause("accepted", "Requests the contract forbids are accepted", "illegal moves, malformed "
           "timelines, duplicates or bad parameters are answered as if they were fine",
           "illegal_move_refused", "illegal_update_rejected", "malformed_update_refused",
           "invalid_request_refused", "duplicate_enrolment_refused",
           "invalid_list_parameter_refused", "negative_data_rejection"),
    _cause("isolated", "Namespaces are not isolated", "another account or mode can see or "
           "change a participation", "namespaces_are_isolated", "foreign_id_not_found",
           "foreign_cursor_refused", "not_listed_to_other_namespace",
           "foreign_create_is_independent", "second_credential_is_distinct"),
    _cause("objects", "Participation objects break the contract's invariants", "a "
           "participation's own fields disagree (its timeline, derived fields, times, history)",
           "current_state_matches_timeline", "timeline_is_ordered",
           "history_follows_transitions", "pending_tail_is_legal_path",
           "timeline_times_are_ordered", "entry_times_within_object_times",
           "control_active_iff_active", "suspension_reasons_match_state",
           "identity_matches_token", "history_is_append_only",
           "telemetry_active_follows_timeline", "object_times_are_exact",
           "time_updated_never_goes_back"),
    _cause("lists", "Lists and pages are wrong", "pages miss, repeat or misorder "
           "participations, or has_more and the cursors are wrong", "list_page_is_complete",
           "list_page_is_well_formed", "list_page_respects_cursor",
           "pages_walk_every_item_once", "pages_walk_back_every_item_once"),
    _cause("errors", "Errors are not as the contract says", "error answers lack the error "
           "object, the code of their cause, or what HTTP requires of them",
           "error_body_is_error_object", "error_names_its_cause",
           "rate_limit_answer_is_documented", "http_rules_hold_outside_the_spec",
           "unsupported_method"),
    _cause("login", "Logins do not give the documented token", "GET /login answers a token "
           "that is not the documented HS256 JWT of the key's account and mode",
           "bearer_token_is_as_documented"),
)
_BY_CHECK = {check: cause for cause in CAUSES for check in cause.checks}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A root cause and the findings it explains."""

    cause: RootCause
    findings: tuple[Finding, ...]

    @property
    def cases(self) -> int:
        return sum(f.cases for f in self.findings)

    @property
    def rules(self) -> list[str]:
        return list(dict.fromkeys(f.rule for f in self.findings))

    def headline(self) -> str:
        n, rules = len(self.findings), self.rules
        label = "rules" if len(rules) > 1 else "rule"
        return (f"{self.cause.title} ({n} finding{'s' if n != 1 else ''}, {self.cases} failed "
                f"case{'s' if self.cases != 1 else ''}; {label} {', '.join(rules)})")


def _own(finding: Finding) -> RootCause:
    cause = _BY_CHECK.get(finding.check)
    if cause is not None:
        return cause
    title = RULE_TITLES.get(finding.rule, "")
    return RootCause(f"rule {finding.rule}", f"Rule {finding.rule} is broken: {title}",
                     f"what rule {finding.rule} requires does not hold", frozenset())


def diagnose(findings: Sequence[Finding]) -> list[Diagnosis]:
    """Each finding under its root cause (the most fundamental one that explains it)."""
    order = {cause.key: i for i, cause in enumerate(CAUSES)}
    own = [_own(f) for f in findings]
    # The answers (by identity) on which each whole-answer cause was found.
    broken_answers: dict[str, set[int]] = {}
    for finding, cause in zip(findings, own, strict=True):
        if cause.explains_its_answers:
            for failure in finding.failures:
                if failure.exchange is not None:
                    broken_answers.setdefault(cause.key, set()).add(id(failure.exchange))
    chosen: list[RootCause] = []
    for finding, cause in zip(findings, own, strict=True):
        answers = {id(f.exchange) for f in finding.failures if f.exchange is not None}
        whole = all(f.exchange is not None for f in finding.failures) and answers
        for earlier in CAUSES[: order.get(cause.key, len(CAUSES))]:
            if whole and earlier.explains_its_answers and answers <= broken_answers.get(
                earlier.key, set()
            ):
                cause = earlier
                break
        chosen.append(cause)
    grouped: dict[str, tuple[RootCause, list[Finding]]] = {}
    for finding, cause in zip(findings, chosen, strict=True):
        grouped.setdefault(cause.key, (cause, []))[1].append(finding)
    ranked = sorted(grouped.values(), key=lambda item: order.get(item[0].key, len(CAUSES)))
    return [Diagnosis(cause, tuple(items)) for cause, items in ranked]
