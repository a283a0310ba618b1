// Every file of this target sees the shared process-test helpers (Tests/BatonTestSupport).
@_exported import BatonTestSupport

// The old names of the shared error type and base class, for the files another branch is
// changing now (ScaleTests, Operation/StaticBinaryTests, Operation/SystemdTests); delete these
// once those say `TestError` and `IntegrationTestCase`.
typealias HelloError = TestError
typealias OperationError = TestError
typealias OperationTestCase = IntegrationTestCase
