fn main() {
    std::process::exit(openser_core::process::main_entry(openser::MODULES));
}
