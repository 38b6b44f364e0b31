# fish completion for tcpwrapctl (tcpwrapd's loginctl): the program lists
# its own commands and flags when called with --generate-bash-completion
# (urfave/cli v2).

function __tcpwrapctl_complete
    set -l args (commandline -opc)
    set -l cur (commandline -ct)
    if string match -q -- '-*' $cur
        $args $cur --generate-bash-completion 2>/dev/null
    else
        $args --generate-bash-completion 2>/dev/null
    end
end

complete -c tcpwrapctl -f -a '(__tcpwrapctl_complete)'
