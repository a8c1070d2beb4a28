package conformance

var kernelSyncCases = []kcase{}
