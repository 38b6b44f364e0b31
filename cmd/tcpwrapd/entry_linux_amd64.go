package main

// vszEntry is an alternative ELF entry point, written in assembly
// (entry_linux_amd64.s), that refuses to start under an RLIMIT_AS below
// service.MinAddressSpace with a clear message before the Go runtime
// crashes on it. It takes effect only when the binary is linked with
//
//	go build -ldflags=-E=main.vszEntry ./cmd/tcpwrapd
//
// Without that flag it is unused, and the same check runs in
// checkAddressSpace instead, which is too late for limits below about
// 730 MiB, where the runtime itself dies first.
func vszEntry()

// keep vszEntry referenced so vet and the linker know it.
var _ = vszEntry
