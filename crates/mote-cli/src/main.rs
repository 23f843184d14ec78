fn main() {
    println!("mote: under construction");
}
