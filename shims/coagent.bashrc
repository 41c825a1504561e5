# coagent.bashrc: gate every command LINE of an interactive bash through the coagent daemon.
#
#   bash --noprofile --rcfile shims/coagent.bashrc -i
#
# How it works (a "preexec" hook of our own; the idea is the one bash-preexec uses):
# - PROMPT_COMMAND (__coagent_precmd) arms the gate: the next simple command is the first
#   one of a new line. The DEBUG trap, run before each simple command, does nothing unless
#   armed; when armed it reads the whole line with `history 1` and asks the daemon.
# - With `shopt -s extdebug` a non-zero return from the DEBUG trap skips the command. A
#   refused line stays vetoed until the next prompt, so `a; b; c` is skipped as a whole.
# - extdebug also makes subshells inherit the trap: for `(cd x; make)` the first trap runs
#   in the subshell. The helper dedupes on the history number, so the line is begun once.
# - PROMPT_COMMAND reports the line's exit status (end_op) and prints the prompt.
# - The daemon connection is held by a helper (coagent-gate serve) started as a coproc;
#   its pipes are dup'ed to plain descriptors because bash closes coproc fds in subshells.
#
# Environment read: COAGENT_SOCKET, COAGENT_AGENT, COAGENT_TOKEN (the daemon and who we
# are), COAGENT_PYTHON (interpreter for the helper; default python3), COAGENT_PROMPT (a
# fixed PS1 for programs driving this shell; PS2 is then empty), COAGENT_GATED (set: we
# run inside an already gated command, so do not gate again), COAGENT_FORCE_NO_VETO (tests).
# Set here: COAGENT_STATUS (exit status of the last line, as reported to the daemon),
# COAGENT_GATE_MODE (on | off | unavailable), and COAGENT_GATED=1 for every child.

[ -n "${BASH_VERSION-}" ] || return 0 2>/dev/null || exit 0
case $- in *i*) ;; *) return 0 ;; esac

# A history entry per line, always, and kept in memory only.
HISTFILE=
HISTCONTROL=
HISTIGNORE=
HISTTIMEFORMAT=
set -o history
shopt -s cmdhist lithist

COAGENT_STATUS=0
COAGENT_GATE_MODE=off
__coagent_armed=
__coagent_veto=

if [[ -n ${COAGENT_PROMPT-} ]]; then
    PS1=$COAGENT_PROMPT
    PS2=
fi

__coagent_say() { printf '[coagent] %s\n' "$*" >&2; }

# Does `return 1` from a DEBUG trap skip the command on this bash? (bash >= 3.2 with extdebug)
__coagent_veto_works() {
    [[ -z ${COAGENT_FORCE_NO_VETO-} ]] || return 1
    local probe
    probe=$(shopt -s extdebug 2>/dev/null || exit
            trap '[[ $BASH_COMMAND != "echo vetoed-not" ]]' DEBUG
            echo vetoed-not
            trap - DEBUG
            echo ok)
    [[ $probe == ok ]]
}

__coagent_start_helper() {
    local py=${COAGENT_PYTHON:-python3} here=${BASH_SOURCE[0]%/*} out
    [[ $here == "${BASH_SOURCE[0]}" ]] && here=.
    local gate=$here/bin/coagent-gate
    exec {out}>&1
    coproc __COAGENT_HELPER {
        COAGENT_GATED=helper exec "$py" -S -E "$gate" serve --out-fd "$out" --shell-pid "$$"
    }
    exec {__coagent_to}>&"${__COAGENT_HELPER[1]}" {__coagent_from}<&"${__COAGENT_HELPER[0]}"
    exec {out}>&-
}

# DEBUG trap body, reached only when armed or vetoing.
__coagent_preexec() {
    [[ $BASH_COMMAND == __coagent_precmd ]] && return 0
    case " ${FUNCNAME[*]} " in *" __coagent_precmd "* | *" __coagent_on_exit "*) return 0 ;; esac
    [[ -z $__coagent_veto ]] || return 1
    [[ -z ${COMP_LINE-} ]] || return 0
    __coagent_armed=
    local entry hist line
    entry=$(builtin history 1)
    [[ $entry =~ ^\ *([0-9]+)[\*\ ]\ (.*)$ ]] || return 0
    hist=${BASH_REMATCH[1]} line=${BASH_REMATCH[2]}
    __coagent_ask "$hist " B "$hist" "$PWD" "$line" || __coagent_reply="$hist refused 126"
    [[ $__coagent_reply == "$hist run "* ]] && return 0
    __coagent_veto=${__coagent_reply##* }
    return 1
}

# Send one request (NUL-terminated fields) and read its reply into __coagent_reply. Replies
# to a request abandoned by ^C may still be in the pipe: skip lines not starting with $1.
__coagent_ask() {
    local want=$1 tries
    shift
    printf '%s\0' "$@" >&"$__coagent_to"
    for tries in 1 2 3 4 5 6 7 8; do
        IFS= read -r __coagent_reply <&"$__coagent_from" || break
        [[ $__coagent_reply == "$want"* ]] && return 0
    done
    return 1
}

__coagent_precmd() {
    local status=$?
    __coagent_armed= __coagent_veto=
    if [[ $COAGENT_GATE_MODE == on ]] && __coagent_ask "ok " E "$status"; then
        status=${__coagent_reply#ok }
        status=${status%% *}
    fi
    COAGENT_STATUS=$status
    __coagent_armed=1
}

__coagent_on_exit() {
    local status=$?
    [[ $COAGENT_GATE_MODE == on ]] && printf 'E\0%s\0' "$status" >&"$__coagent_to" 2>/dev/null
}

if [[ -n ${COAGENT_GATED-} ]]; then
    :   # inside a gated command already: its op covers this shell
elif [[ -z ${COAGENT_SOCKET-} ]]; then
    __coagent_say "no daemon (COAGENT_SOCKET is not set): commands are NOT gated"
elif ! shopt -s extdebug 2>/dev/null || ! __coagent_veto_works; then
    COAGENT_GATE_MODE=unavailable
    __coagent_say "this bash (${BASH_VERSION}) cannot skip a command from its DEBUG trap:" \
        "commands are NOT gated; use \`coagent exec -- CMD\` for each command instead"
else
    __coagent_start_helper
    trap '[[ -z $__coagent_armed$__coagent_veto ]] || __coagent_preexec' DEBUG
    trap __coagent_on_exit EXIT
    COAGENT_GATE_MODE=on
fi
PROMPT_COMMAND=__coagent_precmd
export COAGENT_GATED=1 COAGENT_STATUS COAGENT_GATE_MODE
