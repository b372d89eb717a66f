"""A seeded synthetic grocery shop: the dataset the package uses when no real data is present.

The shop imitates the shape of real grocery logs (Instacart-like) closely enough for every
chapter to run on it, and it plants structure we know the answer to, so chapters can check
whether a model finds it.

How the data are made
---------------------
1. **Catalogue.** Departments split into aisles (:data:`AISLES`); each aisle's products are
   readable combinations of brand, variant, product noun and pack size ("Barilla Whole Grain
   Spaghetti", "Pampers Swaddlers Diapers Size 3"). Within an aisle, popularity follows a
   Zipf law: a few best sellers and a long tail.
2. **Tastes.** Every user reaches only some departments (few people buy diapers), likes them
   in Dirichlet-distributed proportions, likes aisles and brands in their own way, and has a
   handful of *staples* that go into most of their baskets -- this is what makes grocery data
   full of repeat purchases.
3. **Baskets.** Each user places a negative-binomial number of orders (at least 3) of
   1 + Poisson items: staples first, the rest drawn from the user's tastes.
4. **New departments.** Some users start buying from a department they never used midway
   through their history (a new parent starts buying diapers), so some next orders reach a
   department the user has never bought from -- the cross-category case this book is about.
5. **Planted complements.** When a basket holds an item from a trigger aisle, an item from
   the complement aisle in a *different* department is added with high probability
   (:data:`PLANTED_COMPLEMENTS`, :func:`planted_complement_pairs`).
6. **Time.** Users join at different dates of one year and come back every 1-30 days.

Everything is drawn from one ``numpy.random.default_rng(seed)``: the same seed gives the
same frames.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.dataset import Dataset

__all__ = [
    "AISLES",
    "COMPLEMENT_PROB",
    "DEPARTMENTS",
    "PLANTED_COMPLEMENTS",
    "Aisle",
    "generate_shop_frames",
    "make_catalogue",
    "make_synthetic_shop",
    "planted_complement_pairs",
]

# ---------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Aisle:
    """One aisle of the synthetic catalogue and the recipe for its product names.

    A product title is ``"{brand} {variant} {noun} {size}"`` with empty parts left out, for
    every brand, every product noun with each of its variants, and every pack size.

    Parameters
    ----------
    path : str
        Category path ``"department > aisle"``.
    weight : float
        How much shoppers use the aisle, relative to the other aisles of its department.
    price : tuple of float
        Range of shelf prices.
    brands : tuple of str
        Brands. ``""`` and the words in ``QUALIFIERS`` (``"Organic"``) make unbranded
        products: they may lead the title but leave the brand missing.
    products : dict of str to tuple of str
        Product noun -> its variants (an empty tuple: the noun alone).
    sizes : tuple of str
        Pack sizes appended to the title (``("",)``: none).
    """

    path: str
    weight: float
    price: tuple[float, float]
    brands: tuple[str, ...]
    products: dict[str, tuple[str, ...]] = field(hash=False)
    sizes: tuple[str, ...] = ("",)

    @property
    def department(self) -> str:
        """The top level of ``path``."""
        return self.path.split(S.CATEGORY_SEP)[0]

    def all_products(self) -> list[tuple[str, str | None]]:
        """Every (title, brand) the recipe allows, in a fixed order; brand None if unbranded."""
        lines = [(variant, noun) for noun, variants in self.products.items()
                 for variant in (variants or ("",))]
        out = []
        for brand, (variant, noun), size in itertools.product(self.brands, lines, self.sizes):
            title = " ".join(part for part in (brand, variant, noun, size) if part)
            out.append((title, None if brand in QUALIFIERS else brand))
        return out


#: Words listed among an aisle's brands that describe the product rather than brand it.
QUALIFIERS = frozenset({"", "Organic", "Grass-Fed"})


#: Departments, as name -> (weight, reach). ``weight`` sets how much of a typical user's
#: spending goes there; ``reach`` is the share of users who shop there from their first order
#: on (the others may *adopt* it later). Everybody buys produce, so every user has a start.
DEPARTMENTS: dict[str, tuple[float, float]] = {
    "produce": (3.0, 1.0),
    "dairy eggs": (1.8, 0.95),
    "bakery": (1.2, 0.8),
    "deli": (0.8, 0.45),
    "pantry": (1.8, 0.9),
    "breakfast": (0.8, 0.6),
    "meat seafood": (1.2, 0.65),
    "frozen": (1.2, 0.65),
    "beverages": (1.5, 0.85),
    "alcohol": (0.6, 0.3),
    "snacks": (1.3, 0.8),
    "household": (0.8, 0.5),
    "babies": (0.8, 0.1),
    "personal care": (0.6, 0.4),
}

_P = "produce > "
#: The aisles of the synthetic shop, each with the recipe of its product names.
#:
#: :meta hide-value:
AISLES: tuple[Aisle, ...] = (
    # produce --------------------------------------------------------------------------
    Aisle(_P + "fresh fruits", 3.0, (0.79, 5.99), ("", "Organic"), {
        "Apples": ("Fuji", "Gala", "Honeycrisp", "Granny Smith", "Pink Lady"),
        "Bananas": (), "Strawberries": (), "Blueberries": (), "Raspberries": (),
        "Seedless Grapes": ("Red", "Green"), "Lemons": (), "Limes": (), "Navel Oranges": (),
        "Clementines": (), "Pears": ("Bartlett", "Bosc"), "Mangoes": (), "Pineapple": (),
        "Kiwi": (), "Peaches": ()}),
    Aisle(_P + "fresh vegetables", 3.0, (0.69, 4.99), ("", "Organic"), {
        "Carrots": ("Baby", "Rainbow"), "Broccoli Crowns": (), "Cauliflower": (),
        "Bell Peppers": ("Red", "Yellow", "Green"), "Cucumbers": ("English", "Mini"),
        "Zucchini": (), "Onions": ("Yellow", "Red", "Sweet"), "Garlic": (),
        "Potatoes": ("Russet", "Yukon Gold", "Sweet"), "Celery": (), "Asparagus": (),
        "Green Beans": (), "Tomatoes": ("Roma", "Cherry", "Vine-Ripened"),
        "Avocados": ("Hass",), "Jalapeño Peppers": ()}),
    Aisle(_P + "packaged salads & herbs", 1.5, (1.99, 5.49),
          ("", "Organic", "Earthbound Farm", "Taylor Farms", "Fresh Express"), {
              "Baby Spinach": (), "Spring Mix": (), "Caesar Salad Kit": ("Chopped",),
              "Romaine Hearts": (), "Arugula": (), "Kale": ("Lacinato", "Baby"),
              "Cilantro": (), "Basil": (), "Italian Parsley": ()}),
    # dairy eggs -----------------------------------------------------------------------
    Aisle("dairy eggs > milk", 0.8, (2.49, 6.99),
          ("Horizon Organic", "Organic Valley", "Fairlife", "Lactaid", "Darigold",
           "Clover Sonoma"), {
              "Milk": ("Whole", "2% Reduced Fat", "1% Lowfat", "Fat Free"),
              "Chocolate Milk": ("Lowfat",)},
          ("Half Gallon", "1 Gallon")),
    Aisle("dairy eggs > cheese", 0.6, (2.99, 8.99),
          ("Kraft", "Tillamook", "Sargento", "Cabot", "BelGioioso", "Galbani"), {
              "Cheese": ("Shredded Mozzarella", "Shredded Parmesan", "Grated Parmesan",
                         "Sharp Cheddar", "Mild Cheddar", "Colby Jack", "Swiss Slices",
                         "Provolone Slices", "Ricotta")}),
    Aisle("dairy eggs > eggs", 0.8, (2.49, 7.99),
          ("Vital Farms", "Eggland's Best", "Pete and Gerry's", "Happy Egg Co.", "Nellie's"), {
              "Eggs": ("Large Brown", "Large White", "Pasture-Raised Large",
                       "Organic Large Brown", "Cage-Free Large")},
          ("12 ct", "18 ct")),
    Aisle("dairy eggs > yogurt", 1.2, (0.99, 6.49),
          ("Chobani", "Fage", "Siggi's", "Oikos", "Yoplait", "Stonyfield Organic"), {
              "Greek Yogurt": ("Plain", "Vanilla", "Strawberry", "Blueberry", "Honey"),
              "Whole Milk Yogurt": ("Plain", "Vanilla")}),
    Aisle("dairy eggs > butter", 0.8, (2.99, 6.99),
          ("Kerrygold", "Land O Lakes", "Tillamook", "Plugrá", "Challenge"), {
              "Butter": ("Salted", "Unsalted", "European Style"),
              "Spreadable Butter": ("Olive Oil",)}),
    Aisle("dairy eggs > creamer", 0.6, (2.99, 5.99),
          ("Coffee Mate", "International Delight", "Chobani", "Silk", "Nutpods",
           "Califia Farms"), {
              "Creamer": ("French Vanilla", "Hazelnut", "Original", "Sweet Cream",
                          "Caramel Macchiato", "Oat Milk")}),
    # bakery ---------------------------------------------------------------------------
    Aisle("bakery > bread", 1.5, (2.49, 6.49),
          ("Dave's Killer Bread", "Nature's Own", "Sara Lee", "Pepperidge Farm", "Arnold",
           "La Brea Bakery"), {
              "Bread": ("Whole Wheat", "21 Whole Grains", "White", "Sourdough", "Honey Wheat",
                        "Multigrain", "Rye")}),
    Aisle("bakery > buns & rolls", 0.6, (2.49, 5.49),
          ("Martin's", "Nature's Own", "Pepperidge Farm", "Sara Lee", "King's Hawaiian",
           "Bimbo"), {
              "Hamburger Buns": ("Potato", "Sesame", "Whole Wheat", "Brioche"),
              "Hot Dog Buns": ("Potato", "Classic"), "Dinner Rolls": ("Sweet", "Classic")}),
    Aisle("bakery > tortillas & flatbreads", 0.6, (1.99, 4.99),
          ("Mission", "Guerrero", "La Banderita", "Stonefire", "Siete"), {
              "Tortillas": ("Flour", "Corn", "Whole Wheat", "Carb Balance"),
              "Naan": ("Original", "Garlic"), "Pita": ("Whole Wheat",)}),
    Aisle("bakery > cakes & pastries", 0.6, (2.99, 9.99),
          ("Entenmann's", "Sara Lee", "Little Debbie", "Bakery Fresh", "Hostess"), {
              "Donuts": ("Glazed", "Chocolate Frosted", "Powdered"),
              "Muffins": ("Blueberry", "Chocolate Chip"), "Croissants": ("Butter",),
              "Cinnamon Rolls": ()}),
    # deli -----------------------------------------------------------------------------
    Aisle("deli > specialty cheeses", 0.8, (3.99, 14.99),
          ("Boar's Head", "Président", "Castello", "Cabot", "Murray's", "BelGioioso"), {
              "Brie": ("Double Cream", "Triple Cream"), "Gouda": ("Aged", "Smoked"),
              "Manchego": (), "Goat Cheese": ("Herbed", "Plain"), "Burrata": (),
              "Blue Cheese": ("Crumbled",), "Gruyère": ()}),
    Aisle("deli > lunch meat", 1.0, (3.99, 9.99),
          ("Boar's Head", "Applegate", "Hillshire Farm", "Oscar Mayer", "Columbus"), {
              "Turkey Breast": ("Oven Roasted", "Smoked", "Honey"),
              "Ham": ("Black Forest", "Honey"), "Genoa Salami": (), "Roast Beef": ()}),
    Aisle("deli > hummus & spreads", 0.6, (2.99, 6.99),
          ("Sabra", "Cedar's", "Hope", "Ithaca", "Boar's Head"), {
              "Hummus": ("Classic", "Roasted Red Pepper", "Roasted Garlic", "Everything"),
              "Tzatziki": (), "Spinach Artichoke Dip": ()}),
    Aisle("deli > prepared meals", 0.5, (4.99, 12.99), ("", "Fresh Kitchen", "Deli Fresh"), {
        "Rotisserie Chicken": ("Classic", "Lemon Pepper"), "Mac & Cheese": (),
        "Chicken Caesar Wrap": (), "Sushi Roll": ("California", "Spicy Tuna"),
        "Potato Salad": (), "Pasta Salad": ()}),
    # pantry ---------------------------------------------------------------------------
    Aisle("pantry > dry pasta", 0.5, (1.29, 4.49),
          ("Barilla", "De Cecco", "Rummo", "Banza", "Ronzoni", "Garofalo"), {
              noun: ("", "Whole Grain") for noun in (
                  "Spaghetti", "Penne Rigate", "Rigatoni", "Fusilli", "Linguine", "Farfalle",
                  "Elbows", "Orzo")}),
    Aisle("pantry > pasta sauce", 0.8, (2.49, 8.99),
          ("Rao's Homemade", "Prego", "Bertolli", "Classico", "Newman's Own", "Carbone"), {
              "Pasta Sauce": ("Marinara", "Tomato Basil", "Arrabbiata", "Vodka", "Four Cheese",
                              "Roasted Garlic")}),
    Aisle("pantry > rice & grains", 0.8, (1.99, 7.99),
          ("Lundberg", "Mahatma", "Ben's Original", "Seeds of Change", "Near East",
           "Bob's Red Mill"), {
              "Rice": ("Jasmine", "Basmati", "Long Grain White", "Brown"),
              "Quinoa": ("Tricolor", "White"), "Couscous": ("Pearl",)}),
    Aisle("pantry > canned goods", 1.0, (0.99, 3.99),
          ("Goya", "Bush's", "Del Monte", "Hunt's", "Campbell's", "Progresso", "Amy's"), {
              "Beans": ("Black", "Pinto", "Garbanzo", "Kidney"),
              "Diced Tomatoes": ("Fire-Roasted",),
              "Soup": ("Chicken Noodle", "Tomato", "Lentil", "Minestrone")}),
    Aisle("pantry > salsa & dips", 0.4, (2.49, 5.99),
          ("Tostitos", "Pace", "Frontera", "Herdez", "Mateo's", "Old El Paso"), {
              "Salsa": ("Mild Chunky", "Medium Chunky", "Hot", "Verde", "Restaurant Style",
                        "Roasted Tomato"),
              "Dip": ("Queso Blanco", "Black Bean", "Spicy Queso")}),
    Aisle("pantry > condiments & oils", 1.0, (1.99, 12.99),
          ("Heinz", "Hellmann's", "French's", "Sir Kensington's", "California Olive Ranch",
           "Colavita", "Kikkoman"), {
              "Ketchup": ("Tomato",), "Mayonnaise": ("Real",), "Mustard": ("Yellow", "Dijon"),
              "Olive Oil": ("Extra Virgin",), "Soy Sauce": ("Less Sodium",),
              "Vinegar": ("Balsamic", "Red Wine")}),
    # breakfast ------------------------------------------------------------------------
    Aisle("breakfast > cereal", 0.8, (2.99, 6.49),
          ("Kellogg's", "General Mills", "Post", "Kashi", "Nature's Path", "Quaker"), {
              "Cereal": ("Honey Oat", "Frosted Corn Flakes", "Raisin Bran", "Toasted Oat",
                         "Cinnamon Crunch", "Chocolate Puffs", "Granola Clusters",
                         "Bran Flakes", "Crispy Rice")}),
    Aisle("breakfast > granola & oatmeal", 0.6, (2.99, 6.99),
          ("Quaker", "Bear Naked", "Nature Valley", "Bob's Red Mill", "Purely Elizabeth",
           "McCann's"), {
              "Oats": ("Old Fashioned", "Quick", "Steel Cut"),
              "Granola": ("Honey Almond", "Maple Pecan", "Original"),
              "Instant Oatmeal": ("Maple & Brown Sugar", "Apples & Cinnamon")}),
    Aisle("breakfast > pancakes & syrup", 0.5, (2.49, 9.99),
          ("Krusteaz", "Bisquick", "Kodiak Cakes", "Pearl Milling Company", "Birch Benders",
           "Maple Grove Farms"), {
              "Pancake Mix": ("Buttermilk", "Protein", "Complete", "Gluten Free"),
              "Waffle Mix": ("Belgian",), "Maple Syrup": ("Pure", "Organic")}),
    Aisle("breakfast > breakfast bars", 0.5, (2.99, 6.49),
          ("Nature Valley", "Kind", "RXBAR", "Clif", "Quaker", "Nutri-Grain"), {
              "Bars": ("Oats 'n Honey", "Peanut Butter", "Chocolate Chip", "Blueberry",
                       "Dark Chocolate Sea Salt", "Cinnamon")}),
    # meat seafood ---------------------------------------------------------------------
    Aisle("meat seafood > ground meat", 0.7, (3.99, 9.99),
          ("", "Organic", "Laura's Lean", "Perdue", "Butterball", "Certified Angus"), {
              "Ground Beef": ("80/20", "85/15", "90/10", "93/7 Lean"),
              "Ground Turkey": ("93/7 Lean",), "Ground Pork": ()}),
    Aisle("meat seafood > sausages & hot dogs", 0.6, (3.49, 7.99),
          ("Johnsonville", "Hillshire Farm", "Aidells", "Hebrew National", "Nathan's Famous",
           "Applegate"), {
              "Bratwurst": ("Original", "Beer"), "Italian Sausage": ("Mild", "Hot"),
              "Smoked Sausage": (), "Hot Dogs": ("Beef", "Uncured Beef"),
              "Chicken Sausage": ("Apple",)}),
    Aisle("meat seafood > chicken & turkey", 1.0, (3.99, 12.99),
          ("", "Organic", "Perdue", "Foster Farms", "Tyson", "Bell & Evans"), {
              "Chicken Breasts": ("Boneless Skinless",),
              "Chicken Thighs": ("Boneless Skinless", "Bone-In"), "Chicken Drumsticks": (),
              "Chicken Wings": (), "Whole Chicken": (), "Turkey Breast Cutlets": ()}),
    Aisle("meat seafood > beef & pork", 0.6, (5.99, 19.99),
          ("", "Organic", "Certified Angus", "Grass-Fed", "Smithfield"), {
              "Ribeye Steak": (), "New York Strip Steak": (), "Sirloin Steak": (),
              "Pork Chops": ("Bone-In", "Boneless"), "Pork Tenderloin": (),
              "Baby Back Ribs": (), "Bacon": ("Thick Cut", "Applewood Smoked")}),
    Aisle("meat seafood > fish & seafood", 0.5, (6.99, 19.99),
          ("", "Fresh Catch", "Sea Best", "Ocean Reserve"), {
              "Salmon Fillets": ("Atlantic", "Sockeye", "Coho"), "Cod Fillets": (),
              "Tilapia Fillets": (), "Shrimp": ("Raw Jumbo", "Cooked"), "Tuna Steaks": ("Ahi",),
              "Sea Scallops": ()}),
    # frozen ---------------------------------------------------------------------------
    Aisle("frozen > frozen pizza", 0.6, (3.99, 9.99),
          ("DiGiorno", "Red Baron", "Newman's Own", "Amy's", "Tombstone",
           "California Pizza Kitchen"), {
              "Pizza": ("Pepperoni", "Four Cheese", "Supreme", "Margherita", "BBQ Chicken",
                        "Thin Crust Pepperoni")}),
    Aisle("frozen > ice cream", 0.8, (3.49, 6.99),
          ("Ben & Jerry's", "Häagen-Dazs", "Tillamook", "Breyers", "Talenti", "Halo Top"), {
              "Ice Cream": ("Vanilla Bean", "Chocolate", "Cookies & Cream",
                            "Mint Chocolate Chip", "Strawberry", "Salted Caramel")}),
    Aisle("frozen > frozen vegetables & fruit", 0.7, (1.49, 5.99),
          ("Birds Eye", "Green Giant", "Cascadian Farm", "365 by Whole Foods Market",
           "Wyman's"), {
              "Sweet Peas": (), "Super Sweet Corn": (), "Broccoli Florets": (),
              "Mixed Vegetables": (), "Wild Blueberries": (), "Whole Strawberries": (),
              "Mango Chunks": (), "Riced Cauliflower": ()}),
    Aisle("frozen > frozen meals", 0.7, (2.49, 8.99),
          ("Amy's", "Lean Cuisine", "Stouffer's", "Healthy Choice", "Evol", "Banquet"), {
              "Burrito": ("Bean & Cheese",), "Mac & Cheese": (), "Lasagna": ("Meat", "Vegetable"),
              "Chicken Pot Pie": (), "Enchiladas": ("Cheese",), "Fried Rice": ("Chicken",)}),
    Aisle("frozen > frozen breakfast", 0.4, (2.49, 6.99),
          ("Eggo", "Kodiak Cakes", "Jimmy Dean", "Van's", "Evol"), {
              "Waffles": ("Homestyle", "Blueberry", "Buttermilk"),
              "Breakfast Sandwiches": ("Sausage Egg & Cheese", "Turkey Sausage"),
              "Breakfast Burritos": ()}),
    # beverages ------------------------------------------------------------------------
    Aisle("beverages > coffee", 0.9, (4.99, 14.99),
          ("Starbucks", "Peet's Coffee", "Lavazza", "Folgers", "Dunkin'", "Stumptown"), {
              "Ground Coffee": ("Medium Roast", "Dark Roast", "French Roast", "Breakfast Blend",
                                "Decaf"),
              "Whole Bean Coffee": ("Espresso Roast", "Medium Roast"),
              "K-Cup Pods": ("Medium Roast",)}),
    Aisle("beverages > tea", 0.5, (2.99, 7.99),
          ("Twinings", "Bigelow", "Celestial Seasonings", "Tazo", "Yogi", "Harney & Sons"), {
              "Tea Bags": ("English Breakfast", "Earl Grey", "Green", "Chamomile", "Peppermint",
                           "Chai")}),
    Aisle("beverages > soda", 0.9, (1.99, 8.99),
          ("Coca-Cola", "Pepsi", "Zevia", "Olipop", "Poppi", "Canada Dry"), {
              "Soda": ("Cola", "Zero Sugar Cola", "Ginger Ale", "Root Beer", "Lemon Lime",
                       "Orange")},
          ("6 pk", "12 pk")),
    Aisle("beverages > juice", 0.8, (2.49, 6.99),
          ("Tropicana", "Simply", "Minute Maid", "Ocean Spray", "Martinelli's", "Naked"), {
              "Orange Juice": ("No Pulp", "Some Pulp"), "Apple Juice": (),
              "Cranberry Juice Cocktail": (), "Lemonade": (), "Grapefruit Juice": ()}),
    Aisle("beverages > water & sparkling water", 1.0, (0.99, 6.99),
          ("LaCroix", "Spindrift", "Topo Chico", "San Pellegrino", "Bubly", "Polar"), {
              "Sparkling Water": ("Lime", "Lemon", "Grapefruit", "Mango", "Original",
                                  "Raspberry Lime")}),
    Aisle("beverages > sports & energy drinks", 0.5, (1.99, 7.99),
          ("Gatorade", "Celsius", "Red Bull", "Monster", "BodyArmor", "Powerade"), {
              "Energy Drink": ("Original", "Sugar Free", "Tropical"),
              "Sports Drink": ("Fruit Punch", "Lemon-Lime", "Glacier Freeze")}),
    # alcohol --------------------------------------------------------------------------
    Aisle("alcohol > wine", 1.0, (8.99, 24.99),
          ("Josh Cellars", "Kendall-Jackson", "La Crema", "Barefoot", "Kim Crawford", "Meiomi",
           "19 Crimes"), {
              "Cabernet Sauvignon": (), "Pinot Noir": (), "Chardonnay": (),
              "Sauvignon Blanc": (), "Rosé": (), "Red Blend": (), "Prosecco": (),
              "Pinot Grigio": ()},
          ("750 ml",)),
    Aisle("alcohol > beer", 1.0, (7.99, 19.99),
          ("Sierra Nevada", "Stella Artois", "Modelo", "Corona", "Lagunitas", "Blue Moon",
           "Michelob Ultra"), {
              "Pale Ale": (), "IPA": (), "Lager": (), "Pilsner": (), "Wheat Beer": (),
              "Light Beer": ()},
          ("6 pk", "12 pk")),
    Aisle("alcohol > hard seltzer & cider", 0.5, (8.99, 17.99),
          ("White Claw", "Truly", "High Noon", "Bon & Viv", "Vizzy", "Angry Orchard"), {
              "Hard Seltzer": ("Black Cherry", "Mango", "Lime", "Grapefruit", "Variety Pack"),
              "Hard Cider": ("Crisp Apple",)},
          ("6 pk", "12 pk")),
    # snacks ---------------------------------------------------------------------------
    Aisle("snacks > tortilla chips", 0.7, (2.49, 5.49),
          ("Tostitos", "Late July", "Siete", "Mission", "On The Border", "Xochitl"), {
              "Tortilla Chips": ("Restaurant Style", "Scoops", "Hint of Lime", "Blue Corn",
                                 "Multigrain")}),
    Aisle("snacks > potato chips", 0.8, (1.99, 4.99),
          ("Lay's", "Kettle Brand", "Cape Cod", "Utz", "Miss Vickie's", "Boulder Canyon"), {
              "Potato Chips": ("Classic", "Sea Salt & Vinegar", "Barbecue", "Sour Cream & Onion",
                               "Jalapeño", "Salt & Pepper")}),
    Aisle("snacks > crackers", 0.6, (2.49, 5.49),
          ("Ritz", "Triscuit", "Wheat Thins", "Simple Mills", "Mary's Gone Crackers", "Carr's"), {
              "Crackers": ("Original", "Rosemary & Olive Oil", "Cracked Pepper", "Sea Salt",
                           "Everything")}),
    Aisle("snacks > cookies", 0.6, (2.49, 5.99),
          ("Pepperidge Farm", "Tate's Bake Shop", "Nabisco", "Annie's", "Keebler", "Famous Amos"),
          {"Cookies": ("Chocolate Chip", "Oatmeal Raisin", "Double Chocolate", "Shortbread",
                       "Ginger Snap")}),
    Aisle("snacks > candy & chocolate", 0.6, (1.29, 5.99),
          ("Lindt", "Ghirardelli", "Hershey's", "Tony's Chocolonely", "Alter Eco", "Godiva"), {
              "Chocolate Bar": ("Milk", "Dark 70%", "Sea Salt Caramel", "Almond", "White")}),
    Aisle("snacks > nuts & trail mix", 0.5, (3.99, 11.99),
          ("Blue Diamond", "Wonderful", "Planters", "Sahale Snacks", "Emerald", "Fisher"), {
              "Almonds": ("Roasted Salted", "Smokehouse", "Whole Natural"),
              "Pistachios": ("Roasted Salted", "No Shells"), "Cashews": ("Whole",),
              "Mixed Nuts": ("Deluxe",), "Trail Mix": ("Classic",)}),
    # household ------------------------------------------------------------------------
    Aisle("household > paper goods", 1.0, (2.99, 24.99),
          ("Bounty", "Charmin", "Scott", "Seventh Generation", "Kleenex", "Viva"), {
              "Paper Towels": ("Select-A-Size",), "Toilet Paper": ("Ultra Soft", "Ultra Strong"),
              "Facial Tissues": (), "Napkins": ()},
          ("", "Mega Pack")),
    Aisle("household > cleaning supplies", 0.8, (2.49, 8.99),
          ("Clorox", "Lysol", "Method", "Mrs. Meyer's", "Seventh Generation", "Windex"), {
              "Disinfecting Wipes": ("Lemon", "Fresh Scent"),
              "All-Purpose Cleaner": ("Lavender", "Lemon Verbena", "Free & Clear"),
              "Glass Cleaner": ()}),
    Aisle("household > laundry", 0.7, (4.99, 19.99),
          ("Tide", "Persil", "Gain", "all", "Seventh Generation", "Downy"), {
              "Laundry Detergent": ("Original", "Free & Clear", "Spring Meadow"),
              "Laundry Pods": ("Original", "Free & Clear"), "Fabric Softener": (),
              "Dryer Sheets": ()}),
    Aisle("household > dish detergent", 0.7, (2.99, 14.99),
          ("Dawn", "Cascade", "Finish", "Seventh Generation", "Method", "Palmolive"), {
              "Dish Soap": ("Original", "Lemon", "Free & Clear"),
              "Dishwasher Pods": ("Platinum", "Original"), "Rinse Aid": ()}),
    Aisle("household > trash bags & food storage", 0.7, (2.99, 15.99),
          ("Glad", "Hefty", "Ziploc", "Reynolds", "Saran", "Seventh Generation"), {
              "Trash Bags": ("Tall Kitchen 13 Gallon", "Large 30 Gallon"),
              "Storage Bags": ("Gallon", "Quart"), "Aluminum Foil": (), "Plastic Wrap": ()}),
    Aisle("household > grilling", 0.3, (4.99, 24.99),
          ("Kingsford", "Royal Oak", "Weber", "B&B Charcoal", "Jealous Devil", "Cowboy"), {
              "Charcoal Briquets": ("Original", "Match Light"), "Lump Charcoal": ("Hardwood",),
              "Lighter Fluid": (), "Wood Chips": ("Hickory", "Mesquite"), "Grill Brush": ()}),
    # babies ---------------------------------------------------------------------------
    Aisle("babies > diapers", 1.2, (9.99, 49.99),
          ("Pampers", "Huggies", "Honest", "Luvs", "Hello Bello", "Coterie"), {
              "Diapers": ("Baby Dry", "Swaddlers", "Cruisers", "Pure Protection")},
          ("Size 1", "Size 2", "Size 3", "Size 4", "Size 5", "Size 6")),
    Aisle("babies > baby food", 1.0, (0.99, 4.99),
          ("Gerber", "Happy Baby", "Earth's Best", "Plum Organics", "Once Upon a Farm",
           "Beech-Nut"), {
              "Baby Food Pouch": ("Apple Spinach", "Pear Mango", "Banana Blueberry",
                                  "Sweet Potato"),
              "Puffs": ("Strawberry", "Sweet Potato"), "Teething Wafers": ()}),
    Aisle("babies > baby formula", 0.5, (19.99, 44.99),
          ("Similac", "Enfamil", "Gerber Good Start", "Kendamil", "Bobbie", "Earth's Best"), {
              "Infant Formula": ("Sensitive", "Gentle", "Organic", "Pro-Advance"),
              "Toddler Formula": ()}),
    # personal care --------------------------------------------------------------------
    Aisle("personal care > baby wipes & care", 0.3, (2.99, 14.99),
          ("WaterWipes", "Pampers", "Huggies", "Honest", "Aquaphor", "Desitin"), {
              "Baby Wipes": ("", "Sensitive", "Fragrance Free"), "Diaper Rash Cream": (),
              "Baby Lotion": (), "Baby Shampoo & Wash": ()}),
    Aisle("personal care > oral care", 0.8, (2.49, 8.99),
          ("Colgate", "Crest", "Sensodyne", "Tom's of Maine", "Oral-B", "Listerine"), {
              "Toothpaste": ("Whitening", "Sensitive", "Fresh Mint"), "Mouthwash": ("Cool Mint",),
              "Toothbrushes": ("Soft",), "Dental Floss": ("Mint",)}),
    Aisle("personal care > hair care", 0.7, (3.99, 12.99),
          ("Pantene", "Dove", "OGX", "Head & Shoulders", "Garnier Fructis", "SheaMoisture"), {
              "Shampoo": ("Moisture", "Volume", "Daily Clean"),
              "Conditioner": ("Moisture", "Volume")}),
    Aisle("personal care > body wash & soap", 0.7, (2.99, 10.99),
          ("Dove", "Dr. Bronner's", "Method", "Native", "Olay", "Irish Spring"), {
              "Body Wash": ("Sensitive Skin", "Coconut", "Eucalyptus"),
              "Bar Soap": ("Unscented", "Lavender"), "Hand Soap": ("Lemon",)}),
    Aisle("personal care > deodorant", 0.5, (3.99, 12.99),
          ("Native", "Dove", "Degree", "Old Spice", "Secret", "Schmidt's"), {
              "Deodorant": ("Coconut & Vanilla", "Cucumber & Mint", "Unscented", "Charcoal")}),
)

#: How many products each aisle stocks (fewer when its recipe allows fewer).
ITEMS_PER_AISLE = (20, 50)

#: Gamma shape behind each user's department shares, relative to the department's weight:
#: small values make tastes lopsided (a few departments take most of a user's shopping).
DEPARTMENT_CONCENTRATION = 0.5

#: Gamma shape behind each user's aisle shares, relative to the aisle's weight.
AISLE_CONCENTRATION = 2.0

#: Gamma shape of the personal factor on item popularity: small values make users loyal to a
#: few brands and products of each aisle.
BRAND_LOYALTY = 0.3

#: Zipf exponent of item popularity within an aisle: a few best sellers, a long tail.
ZIPF_EXPONENT = 1.2

#: Mean number of staples per user (items re-bought in most baskets).
STAPLES_MEAN = 5

#: Chance, per basket, that a staple is replaced by a new favourite (taste drift).
STAPLE_TURNOVER = 0.08

# ---------------------------------------------------------------------------- planted structure

#: Planted cross-department complements, as (trigger aisle, complement aisle) pairs. When a basket holds
#: an item from the trigger aisle, an item from the complement aisle -- the user's own
#: favourite there, drawn from their tastes -- is added with probability ``complement_prob``.
#: Trigger and complement are always in different departments.
PLANTED_COMPLEMENTS: list[tuple[str, str]] = [
    ("pantry > dry pasta", "dairy eggs > cheese"),  # spaghetti -> parmesan
    ("babies > diapers", "personal care > baby wipes & care"),  # diapers -> wipes
    ("snacks > tortilla chips", "pantry > salsa & dips"),  # chips -> salsa
    ("beverages > coffee", "dairy eggs > creamer"),  # coffee -> creamer
    ("breakfast > cereal", "dairy eggs > milk"),  # cereal -> milk
    ("bakery > buns & rolls", "meat seafood > ground meat"),  # burger buns -> ground beef
    ("household > grilling", "meat seafood > sausages & hot dogs"),  # charcoal -> bratwurst
    ("alcohol > wine", "deli > specialty cheeses"),  # wine -> brie
    ("alcohol > beer", "snacks > potato chips"),  # beer -> chips
    ("breakfast > pancakes & syrup", "dairy eggs > eggs"),  # pancake mix -> eggs
]

#: Default probability that a trigger item brings its complement into the basket.
COMPLEMENT_PROB = 0.6

#: Most orders one user can place (keeps a year's history at one order every few days).
MAX_BASKETS = 100


def planted_complement_pairs(source: Dataset | pd.DataFrame, level: str = "item") -> pd.DataFrame:
    """The planted complements, as category pairs or as all the item pairs they cover.

    Parameters
    ----------
    source : Dataset or pandas.DataFrame
        A dataset made by :func:`make_synthetic_shop`, or its catalogue (``items``).
    level : {"item", "category"}
        ``"category"``: one row per pair of :data:`PLANTED_COMPLEMENTS` found in the
        catalogue. ``"item"``: one row per (trigger item, complement item) -- every item of
        the trigger aisle paired with every item of the complement aisle.

    Returns
    -------
    pandas.DataFrame
        Columns ``trigger_category`` and ``complement_category``, plus ``trigger_item`` and
        ``complement_item`` when ``level="item"``.
    """
    if level not in ("item", "category"):
        raise ValueError(f"level must be 'item' or 'category', got {level!r}")
    items = source.items if isinstance(source, Dataset) else source
    pairs = pd.DataFrame(PLANTED_COMPLEMENTS, columns=["trigger_category", "complement_category"])
    present = set(items[S.CATEGORY].dropna())
    pairs = pairs[pairs["trigger_category"].isin(present)
                  & pairs["complement_category"].isin(present)].reset_index(drop=True)
    if level == "category":
        return pairs
    by_category = items[[S.ITEM, S.CATEGORY]]
    out = (pairs
           .merge(by_category.rename(columns={S.ITEM: "trigger_item",
                                              S.CATEGORY: "trigger_category"}))
           .merge(by_category.rename(columns={S.ITEM: "complement_item",
                                              S.CATEGORY: "complement_category"})))
    return out[["trigger_item", "complement_item", "trigger_category", "complement_category"]]


# ---------------------------------------------------------------------------- public entry points


def make_synthetic_shop(n_users: int = 1000, seed: int = 0, *, n_baskets_mean: float = 12.0,
                        basket_size_mean: float = 8.0, complement_prob: float = COMPLEMENT_PROB,
                        adoption_prob: float = 0.4, start: str = "2024-01-01",
                        days: int = 365) -> Dataset:
    """Generate the synthetic grocery shop as a validated :class:`~xsell.data.dataset.Dataset`.

    Parameters
    ----------
    n_users : int
        Number of shoppers.
    seed : int
        Seed of the random generator; the same seed gives the same data.
    n_baskets_mean : float
        Mean number of orders per user (each user places at least 3, at most
        ``MAX_BASKETS``).
    basket_size_mean : float
        Mean number of items drawn for a basket before planted complements are added.
    complement_prob : float
        Probability that a trigger item brings its planted complement into the basket.
    adoption_prob : float
        Probability that a user adopts a department midway through their history.
    start : str
        First day of the simulated year (ISO date).
    days : int
        Length of the window all orders fall into.

    Returns
    -------
    Dataset
        Named ``"synthetic shop"``; ``info`` records the parameters and the planted pairs.

    See Also
    --------
    generate_shop_frames : the same data as two raw frames in the generic format.
    planted_complement_pairs : the planted ground truth.
    """
    params = dict(n_baskets_mean=n_baskets_mean, basket_size_mean=basket_size_mean,
                  complement_prob=complement_prob, adoption_prob=adoption_prob, start=start,
                  days=days)
    interactions, items = generate_shop_frames(n_users, seed, **params)
    info = {"source": "synthetic (xsell.data.synthetic)", "seed": seed, "n_users": n_users,
            **params, "planted_complements": list(PLANTED_COMPLEMENTS)}
    return Dataset.from_frames(interactions, items, name="synthetic shop", info=info)


def generate_shop_frames(n_users: int = 1000, seed: int = 0, *, n_baskets_mean: float = 12.0,
                         basket_size_mean: float = 8.0,
                         complement_prob: float = COMPLEMENT_PROB, adoption_prob: float = 0.4,
                         start: str = "2024-01-01",
                         days: int = 365) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate the synthetic shop as raw ``(interactions, items)`` frames in the generic format.

    Parameters are those of :func:`make_synthetic_shop`.

    Returns
    -------
    interactions : pandas.DataFrame
        ``user_id``, ``item_id``, ``basket_id``, ``timestamp`` (ISO text) and ``quantity``;
        sorted by user, time and item id.
    items : pandas.DataFrame
        ``item_id``, ``title``, ``category`` (``"department > aisle"``), ``brand`` (missing
        for unbranded produce and meat) and ``price``.
    """
    _check_params(n_users, n_baskets_mean, basket_size_mean, complement_prob, adoption_prob,
                  days)
    rng = np.random.default_rng(seed)
    items = make_catalogue(rng)
    cat = _CatalogueCodes.from_items(items)
    tastes = _draw_tastes(rng, n_users, cat)
    n_baskets = _draw_basket_counts(rng, n_users, n_baskets_mean)
    basket_user = np.repeat(np.arange(n_users), n_baskets)  # baskets numbered user by user
    basket, item = _draw_baskets(rng, tastes, n_baskets, basket_size_mean, adoption_prob, cat)
    basket, item = _add_complements(rng, basket, item, basket_user, tastes, complement_prob,
                                    cat)
    basket_time = _draw_basket_times(rng, n_baskets, start, days)
    interactions = _interaction_frame(rng, basket, item, basket_user, basket_time, items)
    return interactions, items


# ---------------------------------------------------------------------------- step 1: catalogue


def make_catalogue(rng: np.random.Generator | int = 0) -> pd.DataFrame:
    """Stock every aisle of :data:`AISLES` with a random selection of its possible products.

    Parameters
    ----------
    rng : numpy.random.Generator or int
        Source of randomness, or a seed for one.

    Returns
    -------
    pandas.DataFrame
        ``item_id`` (``"P00001"``, ...), ``title``, ``category``, ``brand``, ``price``, in
        aisle order.
    """
    rng = np.random.default_rng(rng)  # a Generator passes through unchanged
    rows = []
    for aisle in AISLES:
        products = aisle.all_products()
        n = min(len(products), int(rng.integers(ITEMS_PER_AISLE[0], ITEMS_PER_AISLE[1] + 1)))
        chosen = np.sort(rng.choice(len(products), size=n, replace=False))
        low, high = aisle.price
        # shelf prices end in .x9, like real ones
        prices = np.floor(rng.uniform(low, high, size=n) * 10) / 10 + 0.09
        for k, price in zip(chosen, prices, strict=True):
            title, brand = products[k]
            rows.append((title, aisle.path, brand, round(float(price), 2)))
    items = pd.DataFrame(rows, columns=[S.TITLE, S.CATEGORY, S.BRAND, S.PRICE])
    items = items.drop_duplicates(S.TITLE).reset_index(drop=True)  # titles are shop-wide unique
    items.insert(0, S.ITEM, [f"P{i + 1:05d}" for i in range(len(items))])
    return items


@dataclass
class _CatalogueCodes:
    """Integer codes of the catalogue: aisle of every item, department of every aisle."""

    aisle_of_item: np.ndarray
    dept_of_aisle: np.ndarray

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> _CatalogueCodes:
        paths = [a.path for a in AISLES]
        aisle_of_item = pd.Categorical(items[S.CATEGORY], categories=paths).codes.astype(int)
        departments = list(DEPARTMENTS)
        dept_of_aisle = np.array([departments.index(a.department) for a in AISLES])
        return cls(aisle_of_item, dept_of_aisle)

    @property
    def n_items(self) -> int:
        return len(self.aisle_of_item)

    @property
    def dept_of_item(self) -> np.ndarray:
        return self.dept_of_aisle[self.aisle_of_item]

    def items_in_aisle(self, path: str) -> np.ndarray:
        return np.flatnonzero(self.aisle_of_item == [a.path for a in AISLES].index(path))


def _normalise_within(weights: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Scale every row of ``weights`` to sum to 1 within each group of columns."""
    one_hot = np.eye(group.max() + 1)[group]
    totals = weights @ one_hot
    return weights / totals[:, group]


def _zipf_popularity(rng: np.random.Generator, aisle_of_item: np.ndarray) -> np.ndarray:
    """Within-aisle popularity shares: the item of rank r gets weight 1 / r**ZIPF_EXPONENT."""
    pop = np.empty(len(aisle_of_item))
    for aisle in np.unique(aisle_of_item):
        members = np.flatnonzero(aisle_of_item == aisle)
        ranks = rng.permutation(len(members)) + 1  # which product is the best seller is random
        pop[members] = 1.0 / ranks ** ZIPF_EXPONENT
    return _normalise_within(pop[None, :], aisle_of_item)[0]


# ---------------------------------------------------------------------------- step 2: tastes


@dataclass
class _Tastes:
    """What every user likes; rows are users.

    ``dept`` holds department shares, zero where the user does not shop (yet); ``aisle`` and
    ``item`` hold shares *within* a department and *within* an aisle, defined for every
    department so that an adopted department comes with tastes ready.
    """

    dept: np.ndarray  # (users, departments)
    aisle: np.ndarray  # (users, aisles), sums to 1 within each department
    item: np.ndarray  # (users, items), sums to 1 within each aisle

    def item_probs(self, u: int, dept_share: np.ndarray, cat: _CatalogueCodes) -> np.ndarray:
        """User ``u``'s probability of picking each item, given department shares."""
        p = (dept_share[cat.dept_of_item] * self.aisle[u, cat.aisle_of_item] * self.item[u])
        return p / p.sum()


def _draw_tastes(rng: np.random.Generator, n_users: int, cat: _CatalogueCodes) -> _Tastes:
    """Draw every user's department, aisle and item preferences."""
    weight = np.array([w for w, _ in DEPARTMENTS.values()])
    reach = np.array([r for _, r in DEPARTMENTS.values()])
    shops_there = rng.random((n_users, len(DEPARTMENTS))) < reach
    # Dirichlet shares via normalised Gamma draws; small shapes make tastes lopsided
    dept = rng.gamma(DEPARTMENT_CONCENTRATION * weight / weight.mean(),
                     size=(n_users, len(DEPARTMENTS)))
    dept *= shops_there
    dept /= dept.sum(axis=1, keepdims=True)

    aisle_weight = np.array([a.weight for a in AISLES])
    aisle = rng.gamma(AISLE_CONCENTRATION * aisle_weight, size=(n_users, len(AISLES)))
    aisle = _normalise_within(aisle, cat.dept_of_aisle)

    # brand loyalty: a user's liking of an item = its popularity times a personal factor
    popularity = _zipf_popularity(rng, cat.aisle_of_item)
    item = popularity * rng.gamma(BRAND_LOYALTY, size=(n_users, cat.n_items))
    item = _normalise_within(item, cat.aisle_of_item)
    return _Tastes(dept, aisle, item)


def _draw_basket_counts(rng: np.random.Generator, n_users: int, mean: float) -> np.ndarray:
    """Orders per user: 3 + negative binomial, so most users are light and a few are heavy."""
    extra_mean = mean - 3
    dispersion = 1.5  # smaller = longer tail of heavy shoppers
    extra = rng.negative_binomial(dispersion, dispersion / (dispersion + extra_mean), n_users)
    return np.minimum(3 + extra, MAX_BASKETS)


# ---------------------------------------------------------------------------- step 3: baskets


def _draw_baskets(rng: np.random.Generator, tastes: _Tastes, n_baskets: np.ndarray,
                  basket_size_mean: float, adoption_prob: float,
                  cat: _CatalogueCodes) -> tuple[np.ndarray, np.ndarray]:
    """Fill every user's baskets with staples and picks from their tastes.

    Returns
    -------
    basket, item : numpy.ndarray
        One entry per picked item: basket number (baskets numbered user by user, in time
        order) and item code. An item may be picked twice for one basket.
    """
    first_basket = np.concatenate([[0], np.cumsum(n_baskets)[:-1]])
    out_basket, out_item = [], []
    for u, n_b in enumerate(n_baskets):
        before = tastes.dept[u]
        after, switch = _adopt_department(rng, before, n_b, adoption_prob)
        probs_before = tastes.item_probs(u, before, cat)
        probs_after = tastes.item_probs(u, after, cat)

        # staples: a few favourite items, each re-bought in most baskets; now and then one
        # is replaced by a new favourite, so tastes drift and the past predicts the future
        # less well than the future would (what makes the random split leak)
        n_staples = 1 + rng.poisson(STAPLES_MEAN - 1)
        slot_item = _drifting_staples(rng, n_b, n_staples, probs_before, cat.n_items)
        keeps_staple = rng.random((n_b, n_staples)) < rng.beta(6, 4)
        staple_basket, staple_col = np.nonzero(keeps_staple)

        # the rest of the basket: 1 + Poisson items in all, staples included
        size = 1 + rng.poisson(basket_size_mean - 1, size=n_b)
        n_other = np.maximum(size - keeps_staple.sum(axis=1), 0)
        other_basket = np.repeat(np.arange(n_b), n_other)
        other_item = np.empty(len(other_basket), dtype=int)
        late = other_basket >= switch  # after the user adopted a new department
        other_item[~late] = rng.choice(cat.n_items, size=(~late).sum(), p=probs_before)
        other_item[late] = rng.choice(cat.n_items, size=late.sum(), p=probs_after)

        out_basket.append(first_basket[u] + np.concatenate([staple_basket, other_basket]))
        out_item.append(np.concatenate([slot_item[staple_basket, staple_col], other_item]))
    return np.concatenate(out_basket), np.concatenate(out_item)


def _drifting_staples(rng: np.random.Generator, n_baskets: int, n_staples: int,
                      probs: np.ndarray, n_items: int) -> np.ndarray:
    """Staple item of each (basket, staple slot): each slot changes item with STAPLE_TURNOVER."""
    changes = rng.random((n_baskets, n_staples)) < STAPLE_TURNOVER
    changes[0] = True  # every slot starts with an item
    items = np.zeros((n_baskets, n_staples), dtype=int)
    items[changes] = rng.choice(n_items, size=int(changes.sum()), p=probs)
    # forward-fill: each basket uses the slot's most recent choice
    last_change = np.maximum.accumulate(np.where(changes, np.arange(n_baskets)[:, None], 0), axis=0)
    return items[last_change, np.arange(n_staples)]


def _adopt_department(rng: np.random.Generator, dept_share: np.ndarray, n_baskets: int,
                      adoption_prob: float) -> tuple[np.ndarray, int]:
    """Maybe make the user start shopping in a department they never used.

    Returns
    -------
    new_share : numpy.ndarray
        Department shares from the switch on (``dept_share`` when nothing is adopted).
    switch : int
        Position of the first basket with the new shares (``n_baskets``: never).
    """
    unused = np.flatnonzero(dept_share == 0)
    adopts = rng.random() < adoption_prob
    if not adopts or len(unused) == 0:
        return dept_share, n_baskets
    weight = np.array([w for w, _ in DEPARTMENTS.values()])[unused]
    new_dept = rng.choice(unused, p=weight / weight.sum())
    share = rng.uniform(0.1, 0.3)  # part of the user's shopping the new department takes
    new_share = dept_share * (1 - share)
    new_share[new_dept] = share
    switch = int(rng.integers(1, n_baskets))  # at least one basket before and one after
    return new_share, switch


# ---------------------------------------------------------------------------- step 4: complements


def _add_complements(rng: np.random.Generator, basket: np.ndarray, item: np.ndarray,
                     basket_user: np.ndarray, tastes: _Tastes, prob: float,
                     cat: _CatalogueCodes) -> tuple[np.ndarray, np.ndarray]:
    """Add the planted complement to baskets holding a trigger item, with probability ``prob``.

    Triggers are looked for among the items drawn so far, so complements do not chain. The
    complement is the user's own pick in the complement aisle (their brand, not a fixed item).
    """
    aisle = cat.aisle_of_item[item]
    paths = [a.path for a in AISLES]
    new_basket, new_item = [basket], [item]
    for trigger, complement in PLANTED_COMPLEMENTS:
        triggered = np.unique(basket[aisle == paths.index(trigger)])
        triggered = triggered[rng.random(len(triggered)) < prob]
        candidates = cat.items_in_aisle(complement)
        liking = tastes.item[np.ix_(basket_user[triggered], candidates)]
        new_basket.append(triggered)
        new_item.append(candidates[_sample_rows(rng, liking)])
    return np.concatenate(new_basket), np.concatenate(new_item)


def _sample_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """Draw one column index per row, with probability proportional to the row's weights."""
    cdf = np.cumsum(weights, axis=1)
    target = rng.random(len(weights))[:, None] * cdf[:, -1:]
    return (cdf < target).sum(axis=1)  # inverse-CDF sampling, all rows at once


# ---------------------------------------------------------------------------- step 5: time


def _draw_basket_times(rng: np.random.Generator, n_baskets: np.ndarray, start: str,
                       days: int) -> np.ndarray:
    """Order times: users join on different days and come back every 1-30 days.

    Returns
    -------
    numpy.ndarray of datetime64[m]
        One time per basket, baskets numbered user by user.
    """
    day_of_basket = []
    for n_b in n_baskets:
        # a personal rhythm: typical gap around 9 days, shorter for frequent shoppers so
        # their history still fits the window
        typical_gap = min(rng.lognormal(np.log(9.0), 0.45), 0.8 * (days - 1) / max(n_b - 1, 1))
        gaps = np.clip(np.rint(rng.gamma(2.0, typical_gap / 2, size=n_b - 1)), 1, 30)
        if gaps.sum() > days - 1:  # rare: squeeze the history into the window
            gaps = np.maximum(np.floor(gaps * (days - 1) / gaps.sum()), 1)
        span = int(gaps.sum())
        first_day = rng.integers(0, max(days - span, 1))
        day_of_basket.append(first_day + np.concatenate([[0], np.cumsum(gaps)]))
    day = np.concatenate(day_of_basket).astype(int)
    minute = rng.integers(7 * 60, 22 * 60, size=len(day))  # shops open 7:00-22:00
    return (np.datetime64(start, "m") + day.astype("timedelta64[D]")
            + minute.astype("timedelta64[m]"))


# ---------------------------------------------------------------------------- assembling


def _interaction_frame(rng: np.random.Generator, basket: np.ndarray, item: np.ndarray,
                       basket_user: np.ndarray, basket_time: np.ndarray,
                       items: pd.DataFrame) -> pd.DataFrame:
    """One row per (basket, item): an item picked twice becomes quantity 2."""
    picks = pd.DataFrame({"user": basket_user[basket], "basket": basket, "item": item})
    rows = picks.groupby(["user", "basket", "item"]).size().rename("quantity").reset_index()
    rows["quantity"] += rng.poisson(0.2, size=len(rows))  # now and then a few of the same
    # format each id once, then index: much faster than one f-string per row
    user_ids = np.array([f"U{u + 1:05d}" for u in range(basket_user.max() + 1)])
    basket_ids = np.array([f"O{b + 1:07d}" for b in range(len(basket_time))])
    return pd.DataFrame({
        S.USER: user_ids[rows["user"]],
        S.ITEM: items[S.ITEM].to_numpy()[rows["item"]],
        S.BASKET: basket_ids[rows["basket"]],
        S.TIMESTAMP: np.datetime_as_string(basket_time[rows["basket"]], unit="s"),
        S.QUANTITY: rows["quantity"].to_numpy(),
    })


def _check_params(n_users: int, n_baskets_mean: float, basket_size_mean: float,
                  complement_prob: float, adoption_prob: float, days: int) -> None:
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    if not 3 < n_baskets_mean < MAX_BASKETS:
        raise ValueError(f"n_baskets_mean must lie between 3 and {MAX_BASKETS}, "
                         f"got {n_baskets_mean}")
    if basket_size_mean < 1:
        raise ValueError(f"basket_size_mean must be at least 1, got {basket_size_mean}")
    for name, p in (("complement_prob", complement_prob), ("adoption_prob", adoption_prob)):
        if not 0 <= p <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    if days < 2 * MAX_BASKETS:
        raise ValueError(f"days must be at least {2 * MAX_BASKETS}, got {days}")
