package contract

// LabelNodeSSH is the Swarm node label holding how to reach a node over
// SSH, as "user@host:port" (provision.Target's String, which ParseTarget
// reads back). `pulse node add` sets it; `pulse deploy` and `pulse push`
// read it to put images on the node, `pulse node rm` to make it leave.
const LabelNodeSSH = "pulse.ssh"

// LabelNodePreparing marks a node `pulse node add` joined drained and has
// not made active yet (its images were not all copied): adding it again
// finishes the job, while a node drained by hand is left drained.
const LabelNodePreparing = "pulse.preparing"
