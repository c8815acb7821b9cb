# bash completion for vkvctl: commands, flags, flag values, and the key
# prefixes and namespaces of the running daemon (asked with `vkvctl ls -q`
# and `vkvctl namespaces -q`, honouring --rundir on the command line).
# Installed by `cmake --install` as share/bash-completion/completions/vkvctl;
# or `source client/completion/vkvctl.bash`.

# Runs vkvctl (the one being completed) with the line's --rundir and the
# given arguments; prints its stdout, nothing when the daemon is not there.
_vkvctl_ask() {
    local i rd=()
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        if [[ ${COMP_WORDS[i]} == --rundir ]]; then
            rd=(--rundir "${COMP_WORDS[i + 1]}")
        fi
    done
    local bin=${COMP_WORDS[0]}
    [[ $bin == */* || -n $(type -P -- "$bin") ]] || bin=vkvctl
    "$bin" "${rd[@]}" --color never "$@" 2>/dev/null
}

# Namespaces for --ns: the model part alone where it names one namespace
# (vkvctl accepts it), else the whole name, shell-quoted.
_vkvctl_namespaces() {
    local cur=$1 n m all models=() names=()
    all=$(_vkvctl_ask namespaces -q) || return
    while IFS= read -r n; do
        [[ -n $n ]] && names+=("$n") && models+=("${n%%[@|#]*}")
    done <<<"$all"
    local i j count
    for ((i = 0; i < ${#names[@]}; i++)); do
        count=0
        for ((j = 0; j < ${#names[@]}; j++)); do
            [[ ${models[j]} == "${models[i]}" ]] && ((count++))
        done
        if ((count == 1)); then
            m=${models[i]}
        else
            m=$(printf '%q' "${names[i]}")
        fi
        [[ $m == "$cur"* ]] && COMPREPLY+=("$m")
    done
}

_vkvctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local cmds="status stats ls namespaces ns show evict delete flush verify export top ping help"
    local i cmd="" cmdi=0 ns=""
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --rundir | --color) ((i++)) ;;
        -*) ;;
        *)
            cmd=${COMP_WORDS[i]}
            cmdi=$i
            break
            ;;
        esac
    done
    if [[ -z $cmd ]]; then
        case $prev in
        --rundir) COMPREPLY=($(compgen -d -- "$cur")) ;;
        --color) COMPREPLY=($(compgen -W "auto always never" -- "$cur")) ;;
        *)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "--rundir --json --color --help" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
            fi
            ;;
        esac
        return 0
    fi
    case $prev in
    --ns)
        _vkvctl_namespaces "$cur"
        return 0
        ;;
    --tier) COMPREPLY=($(compgen -W "hot cold" -- "$cur")); return 0 ;;
    --sort) COMPREPLY=($(compgen -W "recency size hits" -- "$cur")); return 0 ;;
    --to) COMPREPLY=($(compgen -W "cold drop" -- "$cur")); return 0 ;;
    --limit | --interval-ms | --iterations) return 0 ;;
    esac
    local flags=""
    case $cmd in
    status) flags="--watch --interval-ms --iterations" ;;
    ls) flags="--ns --tier --sort --limit --long --quiet" ;;
    namespaces | ns) flags="--quiet" ;;
    show) flags="--ns --layers" ;;
    evict) flags="--ns --to --all" ;;
    delete | export) flags="--ns" ;;
    verify) flags="--drop --interval-ms" ;;
    top) flags="--once --iterations --interval-ms" ;;
    help)
        COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
        return 0
        ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags --json --help" -- "$cur"))
        return 0
    fi
    case $cmd in
    show | evict | delete | export)
        local nargs=0
        for ((i = cmdi + 1; i < COMP_CWORD; i++)); do
            case ${COMP_WORDS[i]} in
            --ns | --to)
                [[ ${COMP_WORDS[i]} == --ns ]] && ns=${COMP_WORDS[i + 1]}
                ((i++))
                ;;
            -*) ;;
            *) ((nargs++)) ;;
            esac
        done
        if [[ $cmd == export ]] && ((nargs >= 1)); then
            COMPREPLY=($(compgen -f -- "$cur"))
            return 0
        fi
        local keys
        if [[ -n $ns ]]; then
            # the word as typed: drop its quotes and backslashes (no eval)
            ns=${ns//\\/}
            ns=${ns#[\"\']}
            ns=${ns%[\"\']}
            keys=$(_vkvctl_ask ls -q --ns "$ns")
        else
            keys=$(_vkvctl_ask ls -q)
        fi
        local k lc=${cur,,}
        while IFS= read -r k; do
            [[ -n $k && $k == "$lc"* ]] && COMPREPLY+=("$k")
        done <<<"$keys"
        ;;
    esac
    return 0
}

complete -F _vkvctl vkvctl
