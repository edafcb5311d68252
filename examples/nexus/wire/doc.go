// Package wire defines what Singularity instances and CentralCloud say to
// each other: the six queues and the JSON payload of each, with the
// validation every handler applies before acting on a message.
//
// # Queues
//
// Queues lists the six queues with their direction, purpose, suggested
// worker count and priority. The three CentralCloud → Singularity queues are
// partitioned per instance, because each message addresses one instance:
// InstanceQueue names a partition ("<queue>.<instance id>"), BaseQueue strips
// it. A message for every instance (a new safety profile) is published once
// to SafetyProfilesTopic, which every instance's safety-profile partition
// subscribes to, with instance_id "broadcast".
//
// # Validation
//
// Decode unmarshals a payload strictly (unknown fields are an error) and runs
// its Validate method, which reports every problem at once as a
// *ValidationError; handlers return it wrapped in pgflow.Permanent, so a bad
// message goes to the dead-letter queue with the reason instead of being
// retried.
package wire
