// mimalloc: `analyze` allocates and frees millions of small strings and maps; glibc's malloc
// spent ~40% of its time in malloc_consolidate/unlink_chunk (README, Benchmarks).
#[global_allocator]
static GLOBAL: meshmedic::alloc::Mimalloc = meshmedic::alloc::Mimalloc;

fn main() -> std::process::ExitCode {
    meshmedic::cli::main()
}
