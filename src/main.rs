fn main() {
    std::process::exit(openser::core::process::main_entry());
}
