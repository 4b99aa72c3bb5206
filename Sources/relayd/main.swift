import ArgumentParser

// relayd's entry point. The daemon takes SIGTERM, SIGINT and SIGHUP with sigwait(2) on one thread, so they are
// blocked here, before any other thread (Swift's cooperative pool included) exists; threads inherit the mask.
DaemonSignals.blockInProcess()
RelaydCommand.main()
