# bash completion for tcpwrapctl (tcpwrapd's loginctl), after urfave/cli
# v2's autocomplete/bash_autocomplete: the program lists its own commands
# and flags when called with --generate-bash-completion.

_tcpwrapctl() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion -n "=:" || return
    else
        COMPREPLY=()
        cur="${COMP_WORDS[COMP_CWORD]}"
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi
    local request=("${words[@]:0:$cword}")
    [[ "$cur" == -* ]] && request+=("$cur")
    local opts
    opts=$("${request[@]}" --generate-bash-completion 2>/dev/null)
    COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}

complete -o bashdefault -o default -o nospace -F _tcpwrapctl tcpwrapctl
