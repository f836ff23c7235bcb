fn main() {
    std::process::exit(salvor::cli::run());
}
