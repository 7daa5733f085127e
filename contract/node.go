package contract

// LabelNodeSSH is the Swarm node label holding how to reach a node over
// SSH, as "user@host:port" (provision.Target's String, which ParseTarget
// reads back). `pulse node add` sets it; `pulse deploy` and `pulse push`
// read it to put images on the node, `pulse node rm` to make it leave.
const LabelNodeSSH = "pulse.ssh"
