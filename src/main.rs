fn main() {
    println!("minicluster: not yet usable");
}
