fn main() {
    println!("xtask: nothing yet");
}
