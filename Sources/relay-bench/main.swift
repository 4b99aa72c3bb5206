print("relay-bench")
