package pgflow

// ClaimPausedForTest exposes claimPausedInternal to the external tests.
var ClaimPausedForTest = claimPausedInternal
